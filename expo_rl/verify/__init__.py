"""Answer extraction, math equivalence with a time limit, and reward callables.

``extract_answer`` finds the final answer (last ``\\boxed{}``, ``#### n``, "the answer is");
``is_equivalent`` compares two answers with math-verify in a time-limited worker process (safe
off the main thread, never raises, counted in ``verifier_stats``); rewards are plain callables
``(completion, reference, **row_fields) -> float`` registered by name in ``REWARDS``.
"""

from expo_rl.verify.combine import RewardPart, WeightedReward, with_args
from expo_rl.verify.equivalence import (
    DEFAULT_TIMEOUT_S,
    Verdict,
    check_equivalence,
    clear_cache,
    is_equivalent,
    normalize_answer,
)
from expo_rl.verify.extract import extract_answer, has_boxed_answer, last_boxed, reference_answer
from expo_rl.verify.pool import configure_pool, shutdown_pool
from expo_rl.verify.rewards import (
    REWARDS,
    RewardFn,
    batch_rewards,
    correctness_reward,
    format_reward,
    get_reward,
    overlong_penalty,
    register_reward,
    strict_correctness_reward,
)
from expo_rl.verify.stats import VerifierStats, verifier_stats

__all__ = [
    "DEFAULT_TIMEOUT_S", "REWARDS", "RewardFn", "RewardPart", "Verdict", "WeightedReward", "VerifierStats", "batch_rewards",
    "check_equivalence", "clear_cache", "configure_pool", "correctness_reward",
    "extract_answer", "format_reward", "get_reward", "has_boxed_answer", "is_equivalent",
    "last_boxed", "normalize_answer", "overlong_penalty", "reference_answer", "register_reward", "shutdown_pool",
    "strict_correctness_reward", "verifier_stats", "with_args",
]
