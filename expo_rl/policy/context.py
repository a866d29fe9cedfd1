"""Prompts that do not fit the model's context.

A prompt of ``p`` tokens generating up to ``m`` new tokens needs ``p + m`` positions; past the
model's ``max_position_embeddings`` the model runs on positions it was never trained on (RoPE
extrapolates silently) or fails. :func:`overlong_prompts` finds such prompts so that callers can
warn and count them, or leave them out when asked to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from expo_rl.policy.prompts import encode_prompt

_CONTEXT_ATTRS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_length(model: Any) -> int | None:
    """The model's context window in tokens (its config's position limit), None when unknown."""
    config = getattr(model, "config", None)
    for cfg in (config, getattr(config, "text_config", None)):
        for attr in _CONTEXT_ATTRS:
            value = getattr(cfg, attr, None) if cfg is not None else None
            if isinstance(value, int) and value > 0:
                return value
    return None


def overlong_prompts(tokenizer: Any, prompts: Sequence[str], *, context: int | None,
                     max_new_tokens: int) -> list[int]:
    """Indices of ``prompts`` whose tokens plus ``max_new_tokens`` exceed ``context`` (none when
    the context is unknown)."""
    if context is None:
        return []
    budget = context - max_new_tokens
    return [i for i, prompt in enumerate(prompts) if len(encode_prompt(tokenizer, prompt)) > budget]


def overlong_message(count: int, total: int, ids: Sequence[str], *, context: int, max_new_tokens: int,
                     remedy: str) -> str:
    """One warning line naming the count, the budget and a few problem ids."""
    shown = ", ".join(map(str, ids[:3])) + (", ..." if len(ids) > 3 else "")
    return (f"warning: {count} of {total} prompts do not fit the model's context ({context} positions "
            f"- {max_new_tokens} new tokens = {context - max_new_tokens} prompt tokens at most; e.g. "
            f"{shown}); {remedy}")
