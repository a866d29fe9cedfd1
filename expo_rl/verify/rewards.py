"""Reward functions: plain callables ``reward(completion, reference, **row_fields) -> float``.

For verifiable tasks the reward is ``r(q, o, a*) = 1{answer of o is equivalent to a*}`` (SPEC
section 1). Extra data-set fields (``id``, ``level``, ``subject``, ...) arrive as keyword
arguments, as in TRL's accuracy reward; a reward ignores the ones it does not need. Configs
name a reward by its registry key (``reward: correctness``); ``register_reward`` adds one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from expo_rl.registry import Registry
from expo_rl.verify.equivalence import DEFAULT_TIMEOUT_S, is_equivalent
from expo_rl.verify.extract import extract_answer, has_boxed_answer, reference_answer
from expo_rl.verify.pool import default_pool_size
from expo_rl.verify.stats import verifier_stats

RewardFn = Callable[..., float]
REWARDS: Registry[RewardFn] = Registry("reward", hint=" (or 'package.module:function' for your own)")


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: make ``fn`` available to configs as ``reward: <name>``."""
    return REWARDS.register(name)


def get_reward(name: str) -> RewardFn:
    """The registered reward called ``name``; an UnknownNameError (a ValueError) lists the names."""
    return REWARDS.get(name)


@register_reward("correctness")
def correctness_reward(completion: str, reference: str, *, strict: bool = False,
                       timeout_s: float = DEFAULT_TIMEOUT_S, **row_fields: Any) -> float:
    """1.0 when the completion's final answer is equivalent to ``reference``, else 0.0.

    ``strict=True`` accepts only an explicit answer marker (``\\boxed{}``, ``####``); the
    lenient default also reads "the answer is ...". A verifier timeout scores 0.0 (counted).
    """
    answer = extract_answer(completion, strict=strict)
    if answer is None:
        return 0.0
    return float(is_equivalent(answer, reference_answer(reference), timeout_s=timeout_s))


@register_reward("correctness_strict")
def strict_correctness_reward(completion: str, reference: str, **row_fields: Any) -> float:
    """:func:`correctness_reward` with strict answer parsing (a boxed or ``####`` answer only)."""
    row_fields.pop("strict", None)
    return correctness_reward(completion, reference, strict=True, **row_fields)


@register_reward("format")
def format_reward(completion: str, reference: str, **row_fields: Any) -> float:
    """1.0 when the completion states its answer in a complete, non-empty ``\\boxed{}``."""
    return float(has_boxed_answer(completion))


@register_reward("overlong_penalty")
def overlong_penalty(completion: str, reference: str, *, completion_tokens: int | None = None,
                     max_new_tokens: int | None = None, cache: int | None = None,
                     **row_fields: Any) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), a length penalty in [-1, 0].

    With ``L = completion_tokens``, ``L_max = max_new_tokens`` and ``L_cache = cache`` (default
    ``L_max // 4``): 0 when ``L <= L_max - L_cache``, ``(L_max - L_cache - L) / L_cache`` inside
    the cache, -1 past ``L_max``. The runtime passes ``completion_tokens`` and ``max_new_tokens``
    (``sampling.max_new_tokens``); set ``cache`` (and optionally ``max_new_tokens``) in the
    reward's ``args``. Add it beside correctness with a weight: ``rewards: [{name: correctness},
    {name: overlong_penalty, weight: 1.0, args: {cache: 64}}]``.
    """
    if completion_tokens is None or max_new_tokens is None:
        raise ValueError("overlong_penalty needs completion_tokens and max_new_tokens (the training "
                         "runtime passes both)")
    buffer = max_new_tokens // 4 if cache is None else int(cache)
    if not 0 < buffer <= max_new_tokens:
        raise ValueError(f"overlong_penalty: cache={buffer} must be in 1..max_new_tokens={max_new_tokens}")
    expected = max_new_tokens - buffer
    if completion_tokens <= expected:
        return 0.0
    if completion_tokens <= max_new_tokens:
        return (expected - completion_tokens) / buffer
    return -1.0


def batch_rewards(fn: RewardFn, completions: Sequence[str], references: Sequence[str],
                  rows: Sequence[dict[str, Any]] | None = None, *,
                  workers: int | None = None) -> list[float]:
    """``[fn(completions[i], references[i], **rows[i]) for i]``, computed in parallel.

    The verifier work runs in worker processes, so a few threads keep them all busy
    (``workers`` defaults to the verifier pool size). Keys ``completion``/``reference`` in a row
    are not passed again. A verifier timeout inside ``fn`` scores 0.0 and is counted in
    ``verifier_stats``; an exception raised by ``fn`` itself (a bug in a user reward) propagates,
    naming the row.
    """
    if len(completions) != len(references):
        raise ValueError(f"batch_rewards: {len(completions)} completions but "
                         f"{len(references)} references")
    if rows is not None and len(rows) != len(completions):
        raise ValueError(f"batch_rewards: {len(completions)} completions but {len(rows)} rows")
    fields = [{k: v for k, v in (row or {}).items() if k not in ("completion", "reference")}
              for row in (rows if rows is not None else [None] * len(completions))]

    def one(index: int) -> float:
        try:
            return float(fn(completions[index], references[index], **fields[index]))
        except Exception as error:
            raise RuntimeError(f"reward {getattr(fn, '__name__', fn)!r} failed on row {index}: "
                               f"{type(error).__name__}: {error}") from error

    verifier_stats.add(reward_calls=len(completions))
    threads = min(workers or default_pool_size(), len(completions))
    if threads <= 1:
        return [one(i) for i in range(len(completions))]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="expo-rl-reward") as executor:
        return list(executor.map(one, range(len(completions))))
