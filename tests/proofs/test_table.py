"""The verify table says how much each check covered, not only its verdict."""

from pagefs.proofs.table import Row, render


def test_each_row_shows_what_it_checked():
    rows = [Row("design ≡ spec", "every request", "exhaustive k=4", "agree", True, 1.0,
                "123 programs of 1..4 calls checked"),
            Row("COH-READ", "pagefs (data coherence)", "hypothesis", "inconclusive", False,
                2.0, "0 judged steps;\n3 of 10 cases cut short")]
    text = render(rows)
    assert text.splitlines()[0].split()[-1] == "checked"
    assert "123 programs of 1..4 calls checked" in text
    assert "0 judged steps; | 3 of 10 cases cut short" in text
    assert "inconclusive ✗" in text
