"""The catch-rate report counts what it says: caught, caught by its own property, missed."""

from pagefs.conformance.catch_rate import ANY_DATA, Caught, to_markdown


def test_the_report_counts_caught_own_and_missed():
    rows = [Caught("host daemon", "a", "t", "NODEID", "NODEID", {"NODEID"}, 1.0),
            Caught("host daemon", "b", "t", "NAMESPACE", "NAMESPACE", set(), 1.0),
            Caught("guest driver", "c", "t", ANY_DATA, "data", {"EOF-FAULT"}, 1.0),
            Caught("target", "d", "t", "COH-PEER", "data", {"COH-READ"}, 1.0)]
    text = to_markdown(rows)
    assert "3 of 4 seeded bugs caught (2 by the property they break)" in text
    assert "- host daemon: 1 of 2" in text
    assert text.count("**missed**") == 1
