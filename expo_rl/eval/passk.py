"""The unbiased pass@k estimator and mean accuracy (SPEC section 4; Chen et al. 2021, eq. 1).

For one problem with ``n`` samples of which ``c`` are correct,

    pass@k = 1 - C(n - c, k) / C(n, k),    1 <= k <= n,

the probability that a random k-subset of the n samples contains a correct one. The ratio of
binomials is evaluated as the product ``prod_{i = n-c+1}^{n} (1 - k / i)`` (Codex paper,
Figure 3), which never forms the huge binomials and is exact to float precision.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for ``c`` correct out of ``n`` samples; requires ``1 <= k <= n``."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"pass_at_k: {name} must be an int, got {type(value).__name__}")
    if k < 1:
        raise ValueError(f"pass_at_k: k={k} must be >= 1")
    if n < k:
        raise ValueError(f"pass_at_k: need n >= k samples (n={n}, k={k}); sample more or lower k")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c={c} must be between 0 and n={n}")
    if n - c < k:
        return 1.0  # every k-subset must contain a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean of ``pass_at_k(n, c, k)`` over problems given as ``(n, c)`` pairs (NaN when empty)."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    return sum(values) / len(values) if values else math.nan


def mean_accuracy(counts: Sequence[tuple[int, int]]) -> float:
    """Mean over problems of the fraction of correct samples ``c / n`` (equals mean pass@1)."""
    if not counts:
        return math.nan
    return sum(c / n for n, c in counts) / len(counts)
