"""The training run's over-long prompts: warned about and counted, or left out with
``data.on_overlong: skip`` (expo_rl.policy.context)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from expo_rl.data.records import Problem
from expo_rl.engine.typed_config import ConfigError
from expo_rl.policy.context import context_length, overlong_message, overlong_prompts


def screen_overlong(problems: list[Problem], *, model: Any, tokenizer: Any, prompt: Callable[[Problem], str],
                    max_new_tokens: int, on_overlong: str, announce: bool = True) -> list[Problem]:
    """``problems``, without the over-long ones when ``on_overlong == "skip"``; warns either way.
    ``prompt(problem)`` is the run's prompt (``recipe.prompt_function``)."""
    context = context_length(model)
    prompts = [prompt(p) for p in problems]
    bad = overlong_prompts(tokenizer, prompts, context=context, max_new_tokens=max_new_tokens)
    if not bad:
        return problems
    skip = on_overlong == "skip"
    if announce:
        remedy = ("left out (data.on_overlong=skip)" if skip else
                  "they are trained on anyway; set data.on_overlong=skip to leave them out, or lower "
                  "sampling.max_new_tokens")
        print(overlong_message(len(bad), len(problems), [problems[i].id for i in bad], context=context,
                               max_new_tokens=max_new_tokens, remedy=remedy), file=sys.stderr)
    if not skip:
        return problems
    dropped = set(bad)
    kept = [p for i, p in enumerate(problems) if i not in dropped]
    if not kept:
        raise ConfigError(f"config key 'data.on_overlong': every one of the {len(problems)} prompts is "
                          f"too long for the model's context ({context} positions with "
                          f"sampling.max_new_tokens={max_new_tokens})")
    return kept
