"""Verdicts mean what they say: a pass is judged and held, a departure is reported under
the property it breaks, and `make verify` counts neither n/a nor inconclusive as ok."""

import pytest

from pagefs.conformance import targets
from pagefs.conformance.faults import inject
from pagefs.conformance.measured import durable, single_copy
from pagefs.conformance.report import FAIL, INCONCLUSIVE, NA, PASS, Report, Verdict, combine
from pagefs.conformance.runner import Met, report_where_met, run
from pagefs.verify import verdict_row

DATA = ["COH-READ", "COH-WRITE", "EOF-FAULT", "ISOLATION"]


def test_a_property_whose_cases_were_cut_short_is_not_a_pass(budget):
    # A private cache breaks COH-READ; the runs judging the other data properties meet
    # that departure and stop judging there.
    with targets.factory("local") as base:
        report = run(inject(base, "stale-read"), DATA, **budget)
    by = {v.property: v for v in report.verdicts}
    assert by["COH-READ"].result == FAIL
    for v in report.verdicts:
        assert v.judged > 0, v
        if v.cut:
            assert v.result in (INCONCLUSIVE, FAIL), v
    assert any(v.result == INCONCLUSIVE and v.cut for v in report.verdicts)
    table = report.table()
    assert "judged" in table.splitlines()[0]
    assert "| judged steps | cut |" in report.to_markdown()
    assert Report.from_json(report.to_json()).verdicts[0].judged == by["COH-READ"].judged


def test_the_unbroken_target_is_judged_and_passes(budget):
    with targets.factory("local") as base:
        report = run(base, DATA, **budget)
    assert [(v.result, v.cut) for v in report.verdicts] == [(PASS, 0)] * len(DATA)
    assert all(v.judged > 0 for v in report.verdicts)


def test_a_departure_met_elsewhere_fails_the_property_it_breaks():
    verdicts = [Verdict("NAMESPACE", "namespace", PASS, judged=40),
                Verdict("COH-PEER", "data coherence", INCONCLUSIVE, judged=9, cut=2),
                Verdict("HANDLE", "handles", NA)]
    trace = ["  1. host host.mkdir(path=b'd') -> Ok(None)",
             "  2. guest0 RENAME(...) -> Err(ENOTDIR)   <-- spec allows: Err(ENOENT)"]
    report_where_met(verdicts, [Met(frozenset({"NAMESPACE", "HANDLE"}), tuple(trace),
                                    "COH-PEER")])
    assert verdicts[0].result == FAIL and verdicts[0].trace == trace
    assert "met while judging COH-PEER" in verdicts[0].detail
    assert verdicts[1].result == INCONCLUSIVE  # cut short, not failed: the cut is not its
    assert verdicts[2].result == NA  # not applicable stays so


def test_seeds_combine_to_the_worst_verdict_with_steps_summed():
    one = Report("t", 0, 5, [Verdict("COH-READ", "d", PASS, judged=10, examples=5)])
    two = Report("t", 1, 5, [Verdict("COH-READ", "d", INCONCLUSIVE, judged=4, cut=1,
                                     examples=5)])
    both = combine([one, two])
    assert both.seeds == [0, 1]
    assert (both.verdicts[0].result, both.verdicts[0].judged, both.verdicts[0].cut) == \
        (INCONCLUSIVE, 14, 1)
    assert "Seeds 0, 1" in both.to_markdown()


@pytest.mark.parametrize(("result", "ok"), [(PASS, True), (NA, False), (INCONCLUSIVE, False),
                                            (FAIL, False)])
def test_verify_counts_only_a_judged_pass_as_ok(result, ok):
    row = verdict_row(Verdict("SINGLE-COPY", "-", result, "why", judged=3), "pagefs", "how")
    assert row.ok is ok
    if result != NA:
        assert "3 judged steps" in row.detail


def test_durable_is_judged_on_a_loop_device():
    v = durable()
    assert v.result == PASS, v.detail
    assert "loop device" in v.detail


def test_single_copy_is_measured_by_the_guest_memory_benchmark():
    v = single_copy(runs=1)
    assert v.result == PASS, v.detail
    assert "MiB private per guest through the window" in v.detail
