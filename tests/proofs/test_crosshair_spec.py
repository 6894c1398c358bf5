"""The CrossHair stage of `make verify` (proofs/crosshair_spec.py): its parsing, its
contract counting, and that it really fails on a false contract."""

import textwrap
from dataclasses import replace
from pathlib import Path

from pagefs.proofs import crosshair_spec
from pagefs.proofs.crosshair_spec import (
    ModuleReport,
    check_module,
    declared_conditions,
    parse,
    row_for,
    state_family,
)
from pagefs.spec import rules
from pagefs.spec.properties import violations


def test_parse_counts_each_kind_of_report_line() -> None:
    output = "\n".join([
        "/x/spec/a.py:10: info: Confirmed over all paths.",
        "/x/spec/a.py:11: info: Not confirmed.",
        "/x/spec/a.py:12: info: Unable to meet precondition.",
        "/x/spec/a.py:13: error: false when calling f(1) (which returns 2)",
        "some other noise",
    ])
    assert parse(output) == {
        "a": (1, 1, 1, ("line 13: false when calling f(1) (which returns 2)",))}
    assert set(parse(output + "\n/x/spec/b.py:3: info: Not confirmed.")) == {"a", "b"}


def test_rows_fail_on_errors_unexercised_or_missing_conditions() -> None:
    good = ModuleReport("m", 2, 1, 0, (), 1.0, 0, seeded="refuted")
    row = row_for("m", good, 3, 1.0, "judged elsewhere")
    assert row.ok and row.result == "2/3 confirmed"  # never a bare "pass"
    assert "2 confirmed" in row.detail and "1 not confirmed within 1s" in row.detail
    assert "judged elsewhere" in row.detail
    assert row_for("m", replace(good, unrefuted=0), 2, 1.0).result == "all confirmed"
    assert not row_for("m", good, 4, 1.0).ok  # a declared condition was not reported
    assert not row_for("m", replace(good, unmet=1), 3, 1.0).ok
    bad = row_for("m", replace(good, errors=("line 3: false",)), 3, 1.0)
    assert not bad.ok and "line 3" in bad.detail and bad.result == "1 refuted"


def test_a_budget_too_small_for_the_seeded_bug_fails_the_row() -> None:
    weak = ModuleReport("m", 2, 1, 0, (), 1.0, 0, seeded="not refuted within the budget")
    row = row_for("m", weak, 3, 1.0)
    assert not row.ok and "seeded bug not refuted" in row.detail


def test_every_spec_module_has_a_seeded_bug_and_too_small_a_budget_misses_one() -> None:
    from pagefs.proofs.crosshair_seeded import SEEDED

    assert set(SEEDED) == set(crosshair_spec.SPEC_MODULES)
    reports = crosshair_spec.check_modules(["pagefs.spec.rules"], 0.05, ("rules", "tree"))
    assert reports["rules"].seeded == "refuted"  # an off-by-one on integers: found at once
    reports = crosshair_spec.check_modules(["pagefs.spec.tree"], 0.05, ("tree",))
    assert reports["tree"].seeded != "refuted"
    assert not row_for("tree", reports["tree"], 0, 0.05).ok


def test_groups_balance_conditions() -> None:
    groups = crosshair_spec._groups({"a": 10, "b": 6, "c": 5, "d": 1}, 2)
    assert sorted(map(sorted, groups)) == [["a", "d"], ["b", "c"]]


def test_declared_conditions_counts_post_lines() -> None:
    expected = sum(line.strip().startswith("post")
                   for f in vars(rules).values() if callable(f) and f.__doc__
                   and getattr(f, "__module__", "") == rules.__name__
                   for line in f.__doc__.splitlines())
    assert declared_conditions(rules) == expected > 20


def test_state_family_is_reachable_and_varied() -> None:
    family = state_family()
    assert len(family) >= 20 and len(set(family)) == len(family)
    assert all(not violations(state) for state in family)
    assert any(state.config.read_only for state in family)
    assert any(m is not None and m.writable for s in family for g in s.guests for m in g.window)


def test_a_false_contract_on_a_spec_state_is_refuted(tmp_path: Path) -> None:
    module = tmp_path / "false_contract.py"
    module.write_text(textwrap.dedent('''
        from pagefs.spec.datatypes import State

        def writable_somewhere(state: State) -> bool:
            """
            post: not __return__
            """
            return any(m is not None and m.writable for g in state.guests for m in g.window)
        '''))
    report = check_module(str(module), 2.0)
    assert report.errors and report.returncode == 1
    assert not row_for("false_contract", report, 1, 2.0).ok


def test_a_true_module_passes_with_every_condition_reported() -> None:
    report = check_module("pagefs.spec.times", crosshair_spec.QUICK_SECONDS)
    assert not report.errors and not report.unmet
    assert report.reported == 1


def test_an_operation_with_a_seeded_bug_breaks_its_lawful_contract(tmp_path: Path) -> None:
    """STORE that treats every mapping as writable must be refuted on the state family."""
    module = tmp_path / "seeded_store.py"
    module.write_text(textwrap.dedent('''
        from dataclasses import replace

        from pagefs.spec import memory
        from pagefs.spec.datatypes import Data, GuestId, Outcome, State, WindowOffset
        from pagefs.spec.guests import with_guest
        from pagefs.spec.outcomes import lawful

        def store(state: State, guest: GuestId, woffset: WindowOffset,
                  data: Data) -> tuple[Outcome, ...]:
            """
            pre: 0 <= guest < len(state.guests)
            post: lawful(state, "STORE", (guest, woffset, data), __return__)
            """
            session = state.guests[guest]
            window = tuple(m and replace(m, writable=True) for m in session.window)
            upgraded = with_guest(state, guest, replace(session, window=window))
            return tuple(Outcome(o.result, with_guest(o.state, guest, session))
                         for o in memory.store(upgraded, guest, woffset, data))
        '''))
    report = check_module(str(module), 3.0)
    assert report.errors, report
