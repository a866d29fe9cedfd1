"""What produced a term's cached records: the context its cache keys hash (expo_rl.sources.cache_key).

Everything that changes what a frozen-model sample or an offline self-explanation would be goes
in: the model spec and, for a local model, a fingerprint of its files (name, size, mtime), the
dtype and mixed precision, the sampling settings, the prompt instruction, the seed, and the term's
source, reward and source options, except options that only decide how many records are used,
in which order, or where they are written (reusing those records is exact).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from expo_rl.engine.config import RunConfig, TermConfig
from expo_rl.engine.typed_config import to_dict

# source options that do not change a cached record's content
NOT_IN_KEY = frozenset({
    "rows_per_step", "pairs_per_step", "questions_per_step", "rows_per_question", "shuffle", "cache",
    "pregenerate", "questions_per_call", "keep", "only_zero_signal", "signal_term", "samples_per_question",
    "explanations_per_question", "rejected_samples", "rejected", "refresh_reference",
})
_MAX_FILES = 1000


def model_fingerprint(spec: str) -> str | None:
    """A hash of the names, sizes and modification times of a local model's files (None for a
    spec that is not a path: tiny models are seeded, hub ids and packages name their weights)."""
    path = Path(spec).expanduser()
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())[:_MAX_FILES]
    digest = hashlib.blake2b(digest_size=8)
    for file in files:
        stat = os.stat(file)
        digest.update(f"{file.relative_to(path) if file != path else file.name}|{stat.st_size}|"
                      f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_context(config: RunConfig, term: TermConfig) -> dict[str, Any]:
    """The plain dict that keys ``term``'s cached records under ``config``."""
    return {
        "model": config.model.policy, "model_files": model_fingerprint(config.model.policy),
        "dtype": config.model.dtype, "mixed_precision": config.train.mixed_precision,
        "sampling": {k: v for k, v in to_dict(config.sampling).items() if k != "batch_size"},
        "instruction": config.data.instruction, "system_prompt": config.data.system_prompt,
        "task": config.data.task,
        "seed": config.train.seed, "source": term.source, "reward": term.reward,
        "rewards": to_dict(term.rewards) if term.rewards is not None else None,
        "source_args": {k: v for k, v in sorted(term.source_args.items()) if k not in NOT_IN_KEY},
    }
