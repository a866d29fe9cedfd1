"""Zero-shot prompts (SPEC section 4; ExPO paper, Appendix C.1: "think step by step" plus the format).

``build_prompt(tokenizer, question)`` is the question followed by the instruction, wrapped in the
tokenizer's chat template as one user turn with the assistant turn opened
(``add_generation_prompt=True``); a tokenizer without a chat template gets the plain template
``"{text}\\n\\nAnswer:"`` instead. ``chat_prompt`` does the same for any user text, so ExPO's hinted
prompts (question + answer hint + its own instruction) go through exactly the same wrapping;
``messages_prompt`` renders a whole conversation (TRL's conversational format, system turns
included).

Prompts are strings that already contain every special token the model expects (e.g. Gemma's
``<bos>``); ``encode_prompt`` tokenises them without adding a second one, so
``tokenizer.decode(encode_prompt(tok, p)) == p``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

DEFAULT_INSTRUCTION = "Let's think step by step and put the final answer within \\boxed{}."
PLAIN_TEMPLATE = "{text}\n\nAnswer:"


def has_chat_template(tokenizer: Any) -> bool:
    """True when the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def user_message(question: str, instruction: str | None = DEFAULT_INSTRUCTION) -> str:
    """The user turn: ``question``, a blank line, ``instruction`` (omitted when empty/None)."""
    question = question.strip()
    if not question:
        raise ValueError("build_prompt: empty question")
    return f"{question}\n\n{instruction.strip()}" if instruction and instruction.strip() else question


def chat_prompt(tokenizer: Any, text: str, *, system: str | None = None) -> str:
    """``text`` as one user turn, ready for the assistant's reply.

    Chat template (with ``add_generation_prompt=True``) when the tokenizer has one, else
    ``PLAIN_TEMPLATE`` (with ``system`` prepended on its own paragraph when given).
    """
    if has_chat_template(tokenizer):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    body = f"{system}\n\n{text}" if system else text
    return PLAIN_TEMPLATE.format(text=body)


def build_prompt(tokenizer: Any, question: str, *, instruction: str | None = DEFAULT_INSTRUCTION,
                 system: str | None = None) -> str:
    """The zero-shot prompt for ``question``: ``chat_prompt(user_message(question, instruction))``."""
    return chat_prompt(tokenizer, user_message(question, instruction), system=system)


def messages_prompt(tokenizer: Any, messages: list[dict[str, str]], *, system: str | None = None,
                    instruction: str | None = None) -> str:
    """A conversational prompt (TRL's ``[{role, content}, ...]``) ready for the assistant's reply.

    ``system`` is added as the first turn when the conversation has no system turn of its own;
    ``instruction`` (when given) is appended to the last user turn as in :func:`user_message`.
    Chat template with ``add_generation_prompt=True`` when the tokenizer has one; otherwise the
    turns' texts, one paragraph each (system first), in ``PLAIN_TEMPLATE``.
    """
    turns = [dict(turn) for turn in messages]
    if not turns or turns[-1].get("role") != "user":
        raise ValueError("messages_prompt: the conversation must end with a user turn")
    if instruction:
        turns[-1]["content"] = user_message(turns[-1]["content"], instruction)
    if system and not any(turn.get("role") == "system" for turn in turns):
        turns.insert(0, {"role": "system", "content": system})
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(text="\n\n".join(turn["content"].strip() for turn in turns))


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a prompt string, adding the tokenizer's special tokens only if missing.

    Chat templates already write the BOS token into the text; tokenising with special tokens would
    give ``<bos><bos>`` (a known trap with Gemma and Llama 3 templates), so only plain prompts
    that do not start with BOS get it.
    """
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and prompt.startswith(bos))
    return list(tokenizer(prompt, add_special_tokens=add_special)["input_ids"])


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """[B,T] left-padded ids and attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)
