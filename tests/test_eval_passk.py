"""pass@k equals brute-force enumeration over all k-subsets; tables by level and subject."""

import itertools
import math

import pytest

from expo_rl.eval import (
    ProblemScore,
    by_level,
    by_subject,
    format_table,
    mean_accuracy,
    mean_pass_at_k,
    pass_at_k,
)


def brute_force(n, c, k):
    """Fraction of k-subsets of n samples (the first c correct) holding a correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_matches_enumeration_for_every_small_case(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_closed_form_and_known_values():
    # pass@1 is the fraction correct; all-wrong is 0; more than n-k correct is certain
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0
    # 4 samples, 1 correct, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)


def test_stable_for_large_n():
    # C(1000, 500) overflows a float; the product form does not
    exact = 1 - math.comb(900, 500) / math.comb(1000, 500)
    assert pass_at_k(1000, 100, 500) == pytest.approx(exact, rel=1e-12)
    assert 0.0 < pass_at_k(200, 1, 64) == pytest.approx(64 / 200)


@pytest.mark.parametrize("n,c,k,message", [
    (3, 1, 4, "need n >= k samples"),
    (4, 5, 1, "c=5 must be between 0 and n=4"),
    (4, -1, 1, "c=-1"),
    (4, 1, 0, "k=0 must be >= 1"),
])
def test_invalid_arguments(n, c, k, message):
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)
    with pytest.raises(TypeError, match="n must be an int"):
        pass_at_k(4.0, 1, 1)


def test_means_and_tables():
    scores = [ProblemScore("a", 4, 4, 1, "Algebra"), ProblemScore("b", 4, 0, 1, "Algebra"),
              ProblemScore("c", 4, 1, 5, "Geometry"), ProblemScore("d", 4, 2, None, None)]
    counts = [(s.n, s.correct) for s in scores]
    assert mean_accuracy(counts) == pytest.approx((1 + 0 + 0.25 + 0.5) / 4)
    assert mean_pass_at_k(counts, 1) == pytest.approx(mean_accuracy(counts))
    assert mean_pass_at_k(counts, 4) == pytest.approx(3 / 4)
    levels = by_level(scores, [1, 4])
    assert list(levels) == ["1", "5", "unknown"]
    assert levels["1"] == {1: pytest.approx(0.5), 4: pytest.approx(0.5)}
    assert levels["5"][4] == 1.0 and levels["unknown"][1] == pytest.approx(0.5)
    assert by_subject(scores, [4]) == {"Algebra": {4: 0.5}, "Geometry": {4: 1.0}, "unknown": {4: 1.0}}
    table = format_table(scores, [1, 4])
    assert table.splitlines()[0].split() == ["level", "problems", "pass@1", "pass@4"]
    assert table.splitlines()[-1].split() == ["all", "4", "0.438", "0.750"]
