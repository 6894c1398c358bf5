"""The catch-rate report counts what it says: caught, caught by its own property, missed."""

import pytest

from pagefs.conformance.catch_rate import (
    ANY_DATA,
    Caught,
    from_markdown,
    main,
    merged,
    rerun_in,
    to_markdown,
)


def test_the_report_counts_caught_own_and_missed():
    rows = [Caught("host daemon", "a", "t", "NODEID", "NODEID", {"NODEID"}, 1.0),
            Caught("host daemon", "b", "t", "NAMESPACE", "NAMESPACE", set(), 1.0),
            Caught("guest driver", "c", "t", ANY_DATA, "data", {"EOF-FAULT"}, 1.0),
            Caught("target", "d", "t", "COH-PEER", "data", {"COH-READ"}, 1.0)]
    text = to_markdown(rows)
    assert "3 of 4 seeded bugs caught (2 by the property they break)" in text
    assert "- host daemon: 1 of 2" in text
    assert text.count("**missed**") == 1



def test_a_rerun_of_some_bugs_replaces_their_rows_and_keeps_the_others():
    old = [Caught("host daemon", "short-read", "t", "COH-READ", "data", {"COH-READ"}, 1.0),
           Caught("guest driver", "no-upgrade", "t", ANY_DATA, "data", set(), 2.0),
           Caught("target", "gone", "t", "NODEID", "NODEID", set(), 2.0)]
    kept = from_markdown(to_markdown(old))
    assert [(r.bug, r.failed, r.seconds) for r in kept] == [
        ("short-read", {"COH-READ"}, 1.0), ("no-upgrade", set(), 2.0), ("gone", set(), 2.0)]
    rerun = [Caught("guest driver", "no-upgrade", "t", ANY_DATA, "data", {"EOF-FAULT"}, 3.0),
             Caught("target", "stale-read", "t", "COH-READ", "data", {"COH-READ"}, 4.0)]
    rows = merged(kept, rerun)
    # In a whole run's order; a bug no longer kept is dropped.
    assert [r.bug for r in rows] == ["stale-read", "no-upgrade", "short-read"]
    assert rows[1].failed == {"EOF-FAULT"}
    text = to_markdown(rows, ["stale-read", "no-upgrade"])
    assert "3 of 3 seeded bugs caught" in text
    assert rerun_in(text) == ["stale-read", "no-upgrade"]
    assert from_markdown(text) == from_markdown(to_markdown(rows))
    assert rerun_in(to_markdown(rows)) == []


def test_only_refuses_an_unknown_bug_or_no_report_in_one_line(tmp_path, capsys):
    for argv in (["--only", "nope", "--out", str(tmp_path / "r.md")], ["--only", "torn-writes"],
                 ["--only", "torn-writes", "--out", str(tmp_path / "missing.md")]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()[-1]) > 0
