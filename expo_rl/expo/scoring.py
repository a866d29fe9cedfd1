"""Score texts under a prompt, segment by segment: ``sum_t log pi(tokens of segment k | prompt, earlier segments)``.

The ExPO diagnostics need, from ONE forward pass over ``prompt + c + lead + a* + close + tail``:
the per-token NLL of the chain of thought ``c`` (SPEC 3.3, Figure 2) and ``log pi(a* | q, c)``
(the answer reachability of Lemma 2). Segments are tokenised separately and concatenated, so
each segment's tokens are exactly its own (no merge across a boundary); the prompt is encoded
as the policy layer encodes prompts for sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from expo_rl.policy import completion_logprobs, encode_prompt, pack_sequences


@dataclass(frozen=True)
class SegmentScore:
    """``logprob``: sum of token log-probs of the segment; ``n_tokens``: its token count."""

    logprob: float
    n_tokens: int

    @property
    def nll_per_token(self) -> float | None:
        return -self.logprob / self.n_tokens if self.n_tokens else None


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a completion segment, no special tokens added."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def score_segments(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    segments: Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
    max_tokens: int | None = None,
) -> list[list[SegmentScore]]:
    """Per row ``i``, the score of each segment of ``segments[i]`` after ``prompts[i]``.

    Rows are scored in batches of ``batch_size``, longest first (less padding). ``max_tokens``
    caps prompt + completion length; a segment cut by the cap is scored on its kept tokens.
    Returns ``[len(prompts)][len(segments[i])]`` scores.
    """
    if len(prompts) != len(segments):
        raise ValueError(f"{len(prompts)} prompts but {len(segments)} segment lists")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = []
    for prompt, parts in zip(prompts, segments):
        prompt_ids = encode_prompt(tokenizer, prompt)
        part_ids = [encode_text(tokenizer, part) if part else [] for part in parts]
        if max_tokens is not None:
            budget = max(max_tokens - len(prompt_ids), 0)
            kept = []
            for ids in part_ids:
                kept.append(ids[:budget])
                budget -= len(kept[-1])
            part_ids = kept
        encoded.append((prompt_ids, part_ids))
    order = sorted(range(len(encoded)), key=lambda i: -sum(map(len, encoded[i][1])) - len(encoded[i][0]))
    results: list[list[SegmentScore] | None] = [None] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            prompt_ids = [encoded[i][0] for i in rows]
            completion_ids = [[t for ids in encoded[i][1] for t in ids] for i in rows]
            if all(not ids for ids in completion_ids):
                for i in rows:
                    results[i] = [SegmentScore(0.0, 0) for _ in encoded[i][1]]
                continue
            input_ids, attention_mask, completion_mask = pack_sequences(prompt_ids, completion_ids, pad_id)
            with torch.no_grad():
                logprobs = completion_logprobs(
                    model, input_ids.to(device), attention_mask.to(device), completion_mask.to(device)
                ).double().cpu()
            for b, i in enumerate(rows):
                position = len(prompt_ids[b])
                scores = []
                for ids in encoded[i][1]:
                    scores.append(SegmentScore(float(logprobs[b, position : position + len(ids)].sum()), len(ids)))
                    position += len(ids)
                results[i] = scores
    finally:
        model.train(was_training)
    return [r for r in results if r is not None]
