"""Equivalence through the real math-verify (in the worker pool): LaTeX, units, intervals, tuples."""

import pytest

from expo_rl.verify import check_equivalence, clear_cache, is_equivalent, normalize_answer

EQUIVALENT = [
    ("0.5", "\\frac{1}{2}"),                     # fraction vs decimal
    ("\\dfrac{3}{4}", "\\frac34"),               # \dfrac and the brace-less \frac34
    ("\\frac{2}{4}", "\\frac{1}{2}"),            # unreduced fraction
    ("2\\sqrt{2}", "\\sqrt{8}"),                 # symbolic simplification
    ("48", "48^\\circ"),                         # degree unit
    ("5 \\text{ cm}", "5"),                      # a unit in \text{}
    ("\\$18", "18"),                             # currency
    ("10\\%", "10"),                             # percent, MATH convention
    ("1,000", "1000"),                           # thousands separator
    ("[0, 1)", "[0,1)"),                         # half-open interval
    ("(-\\infty, 3]", "\\left(-\\infty,3\\right]"),
    ("(1,2)", "\\left( 1, 2 \\right)"),          # tuple / open interval
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\{2, 1\\}", "\\{1,2\\}"),                 # sets ignore order
    ("\\text{Evelyn}", "Evelyn"),                # \text{} names
    ("\\text{(C)}", "C"),                        # multiple choice letter
    ("x = 5", "5"),                              # an assignment to the answer
    ("-\\frac{\\sqrt{3}}{2}", "-\\frac{1}{2}\\sqrt{3}"),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"),
]

DIFFERENT = [
    ("\\frac{1}{3}", "\\frac{1}{2}"),
    ("3", "4"),
    ("(2, 1)", "(1, 2)"),                        # tuples are ordered
    ("(0, 1)", "[0, 1]"),                        # open vs closed interval
    ("\\sqrt{2}", "2"),
    ("\\text{Evelyn}", "\\text{Bob}"),
    ("-5", "5"),
    ("\\{1, 2\\}", "\\{1, 2, 3\\}"),
]


@pytest.mark.parametrize("pred,gold", EQUIVALENT)
def test_equivalent_answers(pred, gold):
    assert is_equivalent(pred, gold)


@pytest.mark.parametrize("pred,gold", DIFFERENT)
def test_different_answers(pred, gold):
    assert not is_equivalent(pred, gold)


def test_math_verify_decides_without_the_string_fast_path():
    clear_cache()
    verdict = check_equivalence("0.5", "\\frac{1}{2}", string_match=False)
    assert verdict.equal and verdict.status == "math_verify"
    assert verdict.pred_parsed and verdict.gold_parsed
    # with the fast path on, the first call computes and the second comes from the cache
    assert check_equivalence("0.5", "\\frac{1}{2}").status == "math_verify"
    assert check_equivalence("0.5", "\\frac{1}{2}").status == "cache"


def test_string_fast_path_is_conservative():
    assert normalize_answer("\\left( 3, \\dfrac{\\pi}{2} \\right).") == "(3,\\frac{\\pi}{2})"
    assert normalize_answer("48^{\\circ}") == "48"
    assert normalize_answer("\\leftarrow") == "\\leftarrow"  # \left only as a whole macro
    assert check_equivalence("\\text{4:30 p.m.}", "4:30 p.m.").status == "string_match"


@pytest.mark.parametrize("pred,gold", [(None, "1"), ("", "1"), ("1", ""), ("  ", None)])
def test_empty_inputs_are_not_equivalent_and_never_raise(pred, gold):
    verdict = check_equivalence(pred, gold)
    assert not verdict.equal and verdict.status == "empty"


def test_unparseable_garbage_is_a_counted_parse_failure():
    from expo_rl.verify import verifier_stats

    clear_cache()
    before = verifier_stats.snapshot()
    assert not is_equivalent("\\frac{", "\\frac{1}{2}")
    delta = verifier_stats.difference(verifier_stats.snapshot(), before)
    assert delta["calls"] == 1 and delta["pred_parse_failures"] == 1
