"""Per-token log-probabilities of completion tokens, chunked over positions (SPEC: policy I/O).

For a packed batch ``x = prompt ++ completion (++ pad)`` this computes, at each completion
position t,

    logp[b, t] = log pi(x[b, t] | x[b, <t]) = log_softmax(head(h[b, t-1]))[x[b, t]]

where ``h`` are the final (normed) hidden states of the backbone and ``head`` the LM head (tied or
untied), including the architecture's output transform (Gemma 2's ``final_logit_softcapping``
``c * tanh(z / c)``, Cohere's ``logit_scale``, Granite's ``logits_scaling``). Positions that are not
completion tokens hold 0. With ``temperature=T`` the logits are divided by ``T`` after that transform
and before the log-softmax, ``log_softmax(logits / T)``: the log-probs of the distribution the
sampler draws from at temperature ``T`` (as HF's ``TemperatureLogitsWarper`` and TRL's GRPOTrainer).

Why chunked: ``model(...).logits`` materialises ``B x T x V`` floats (Gemma 3: V = 262,144, so a
batch of 8 x 1024 tokens is 8.6 GB in float32, twice that with log_softmax). Here the backbone runs
once, then only the selected completion positions go through the head, ``chunk_size`` rows at a
time, each chunk under ``torch.utils.checkpoint`` so the backward pass recomputes that chunk's
logits instead of keeping them. Peak extra memory is O(chunk_size x V), independent of B x T.
(When all of a call's logits take at most ``NO_CHECKPOINT_BYTES``, e.g. a 2k-token vocabulary,
they are kept instead: no recomputation.)

Padding: position ids are ``cumsum(attention_mask) - 1``, as ``generate`` uses, so left and right
padding give the same log-probs as the unpadded sequence.

Length sub-batches (``length_buckets=True``): a batch padded to its longest row spends
``B x T_max`` token-passes on a body whose useful work is ``sum_b T_b`` (MATH solutions vary
from 40 to 512 tokens, so about half is padding). The rows are then sorted by length and cut
into contiguous runs minimising ``sum_run rows x width + BUCKET_CALL_TOKENS x runs`` (the second
term prices one more forward call); each run goes through the backbone trimmed to its own
columns (all cut columns are padding for every row of the run, so the result is the same), and
the head chunks see the concatenated positions as before. Only for a bare model: a DDP-style
wrapper must see exactly one forward per backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from expo_rl.policy.length_runs import cheapest_runs
from expo_rl.policy.shared_prefix import shared_prefix_context

# Auto chunk size: rows per chunk so that one chunk's float32 logits take at most this many bytes.
DEFAULT_CHUNK_BYTES = 256 * 2**20
# Length sub-batches: one more forward call is worth this many padded token-positions.
BUCKET_CALL_TOKENS = 256
BUCKET_MAX_ROWS = 512  # the cut search is O(rows^2) in Python; larger batches run in one piece
# Below this size of the whole call's float32 logits (N x V x 4 bytes) the head is not
# checkpointed: keeping them costs less memory than a chunk would, and backward skips recomputing them.
NO_CHECKPOINT_BYTES = 32 * 2**20


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP-style wrappers (``.module``)."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B,T] positions that skip padding: ``cumsum(mask) - 1`` clamped at 0 (as ``generate``)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def final_hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B,T,H] last hidden states (after the final norm), the input of the LM head.

    A bare ``*ForCausalLM`` (or a PEFT model around one) runs only its decoder. A wrapped model
    (DDP and friends, which must see their own ``forward`` to synchronise gradients) is called
    through the wrapper, asking for one logit position and the hidden states.
    """
    position_ids = position_ids_from_mask(attention_mask)
    kwargs: dict[str, Any] = dict(input_ids=input_ids, attention_mask=attention_mask,
                                  position_ids=position_ids, use_cache=False)
    if unwrap(model) is model and hasattr(model, "get_decoder"):
        decoder = model.get_decoder()
        if decoder is not None and decoder is not model:
            return decoder(**kwargs).last_hidden_state
    out = model(**kwargs, output_hidden_states=True, logits_to_keep=1)
    return out.hidden_states[-1]


def _output_transform(config: Any) -> tuple[float | None, float]:
    """(softcap, multiplier) applied to raw head outputs, read from the model config."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    softcap = getattr(text_config, "final_logit_softcapping", None)
    scale = 1.0
    if getattr(text_config, "logit_scale", None) is not None:  # Cohere: logits * logit_scale
        scale *= float(text_config.logit_scale)
    if getattr(text_config, "logits_scaling", None) is not None:  # Granite: logits / logits_scaling
        scale /= float(text_config.logits_scaling)
    return (float(softcap) if softcap else None), scale


def head_logits(head: nn.Module, hidden: torch.Tensor, softcap: float | None, scale: float,
                temperature: float = 1.0) -> torch.Tensor:
    """[N,V] float32 logits for [N,H] hidden states: ``c * tanh(s * head(h) / c) / T`` (softcap c,
    temperature T)."""
    logits = head(hidden).float()
    if scale != 1.0:
        logits = logits * scale
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    if temperature != 1.0:
        logits = logits / temperature
    return logits


def _chunk_stats(head: nn.Module, softcap: float | None, scale: float, temperature: float, with_entropy: bool,
                 hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(target) [N] and entropy [N] (zeros unless ``with_entropy``) for one chunk of rows."""
    logp = torch.log_softmax(head_logits(head, hidden, softcap, scale, temperature), dim=-1)
    token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if with_entropy:
        entropy = -(logp.exp() * logp).sum(-1)
    else:
        entropy = token_logp.new_zeros(token_logp.shape)
    return token_logp, entropy


def auto_chunk_size(vocab_size: int, budget_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Rows per chunk so one chunk's float32 logits fit in ``budget_bytes`` (Gemma 3: 256 rows)."""
    return max(1, budget_bytes // (4 * max(1, vocab_size)))


def completion_logprobs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        completion_mask: torch.Tensor, *, chunk_size: int | None = None,
                        return_entropy: bool = False, length_buckets: bool = False, temperature: float = 1.0,
                        shared_prefix: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """[B,T] float32 ``log pi_T(input_ids[:, t] | input_ids[:, <t])`` where ``completion_mask`` is 1,
    else 0; ``pi_T = softmax(logits / temperature)``.

    Args:
        model: a causal LM (``*ForCausalLM``, PEFT-wrapped, or DDP-wrapped).
        input_ids, attention_mask, completion_mask: [B,T]; padding may be left or right.
            Position 0 has no context, so it is never scored.
        chunk_size: completion positions per head chunk; ``None`` picks one from the vocabulary
            size (``auto_chunk_size``). Peak extra memory is about 2-3 x chunk_size x V x 4 bytes.
        return_entropy: also return [B,T] entropy of pi(. | <t) at the same positions (0 elsewhere).
        length_buckets: run the backbone on length-sorted sub-batches trimmed to their own width
            (module docstring); same values, less padding. Ignored for wrapped models.
        temperature: > 0; the log-probs (and entropy) of ``softmax(logits / temperature)``, the
            distribution ``sample(..., temperature=temperature)`` draws from (before top-p).
        shared_prefix: rows with the same prompt (everything before the first scored token) run
            it once (``expo_rl.policy.shared_prefix``); same values. Used instead of the usual
            (or length-bucketed) forward where it applies and sends fewer tokens through the body.

    Gradients flow to the backbone and the head when grad mode is on; each chunk is checkpointed
    so backward recomputes its logits instead of storing them.
    """
    if input_ids.shape != attention_mask.shape or input_ids.shape != completion_mask.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)}, attention_mask {tuple(attention_mask.shape)} and "
                         f"completion_mask {tuple(completion_mask.shape)} must have the same [B,T] shape")
    inner = unwrap(model)
    head = inner.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(inner).__name__} has no output embeddings (LM head); need a causal LM")
    softcap, scale = _output_transform(inner.config)
    if chunk_size is None:
        chunk_size = auto_chunk_size(int(head.weight.shape[0]) if hasattr(head, "weight") else inner.config.vocab_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")

    bare = unwrap(model) is model
    pieces = length_sub_batches(attention_mask) if length_buckets and bare else None
    shared = None
    if shared_prefix and bare:  # only when it sends fewer tokens through the body than the other way
        budget = (sum(len(i) * (end - start) + BUCKET_CALL_TOKENS for i, start, end in pieces) if pieces
                  else input_ids.numel() + BUCKET_CALL_TOKENS)
        shared = shared_prefix_context(model, input_ids, attention_mask, completion_mask, max_tokens=budget,
                                       call_tokens=BUCKET_CALL_TOKENS)
    if shared is not None:
        rows, cols, context = shared
    elif pieces is None:
        rows, cols, context = _scored_context(model, input_ids, attention_mask, completion_mask)
    else:
        parts = []
        for index, start, end in pieces:
            r, c, h = _scored_context(model, input_ids[index, start:end], attention_mask[index, start:end],
                                      completion_mask[index, start:end])
            parts.append((index[r], c + start, h))
        rows, cols, context = (torch.cat(x) for x in zip(*parts))
    targets = input_ids[rows, cols]  # [N]

    vocab = int(head.weight.shape[0]) if hasattr(head, "weight") else inner.config.vocab_size
    use_checkpoint = torch.is_grad_enabled() and targets.numel() * vocab * 4 > NO_CHECKPOINT_BYTES and (
        context.requires_grad or any(p.requires_grad for p in head.parameters()))
    logps, entropies = [], []
    for start in range(0, targets.numel(), chunk_size):
        args = (head, softcap, scale, float(temperature), return_entropy, context[start:start + chunk_size],
                targets[start:start + chunk_size])
        if use_checkpoint:
            logp, entropy = checkpoint(_chunk_stats, *args, use_reentrant=False)
        else:
            logp, entropy = _chunk_stats(*args)
        logps.append(logp)
        entropies.append(entropy)

    def scatter(values: list[torch.Tensor]) -> torch.Tensor:
        flat = torch.cat(values) if values else context.new_zeros(0, dtype=torch.float32)
        out = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)
        return out.index_put((rows, cols), flat)

    logprobs = scatter(logps)
    return (logprobs, scatter(entropies)) if return_entropy else logprobs


def _scored_context(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    completion_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, cols, [N,H] hidden state at t-1) of every scored completion position t."""
    hidden = final_hidden_states(model, input_ids, attention_mask)  # [B,T,H]
    selected = completion_mask.bool() & attention_mask.bool()
    selected[:, 0] = False
    rows, cols = selected.nonzero(as_tuple=True)  # scored positions t, predicted from t-1
    return rows, cols, hidden[rows, cols - 1]


def length_sub_batches(attention_mask: torch.Tensor, call_tokens: int = BUCKET_CALL_TOKENS
                       ) -> list[tuple[torch.Tensor, int, int]] | None:
    """``(row indices, first column, end column)`` of length-sorted sub-batches, or None when one
    piece is cheapest. Cost of a run of rows: ``rows x (end - first)`` over the columns any of
    them uses, plus ``call_tokens`` per run; the exact minimum over contiguous cuts of the rows
    sorted by span (``expo_rl.policy.length_runs.cheapest_runs``, O(B^2))."""
    mask = attention_mask.bool()
    rows_n, width = mask.shape
    if rows_n < 2 or rows_n > BUCKET_MAX_ROWS or not bool(mask.any(-1).all()):
        return None
    columns = torch.arange(width, device=mask.device)
    first = torch.where(mask, columns, width).min(-1).values.tolist()
    end = (torch.where(mask, columns, -1).max(-1).values + 1).tolist()
    cost, runs = cheapest_runs(first, end, call_tokens)
    if cost >= rows_n * width + call_tokens:
        return None
    return [(torch.tensor(members, dtype=torch.long, device=mask.device), min(first[m] for m in members),
             max(end[m] for m in members)) for members in runs]


def reference_completion_logprobs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                                  completion_mask: torch.Tensor) -> torch.Tensor:
    """The naive version: full ``model(...).logits`` [B,T,V] -> log_softmax -> gather. For tests only.

    Memory grows with B x T x V; ``completion_logprobs`` must agree with it.
    """
    out = model(input_ids=input_ids, attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask), use_cache=False)
    logp = torch.log_softmax(out.logits.float()[:, :-1], dim=-1)
    token_logp = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = (completion_mask.bool() & attention_mask.bool())[:, 1:]
    zeros = torch.zeros(input_ids.shape[0], 1, dtype=torch.float32, device=input_ids.device)
    return torch.cat([zeros, token_logp * mask], dim=1)


def pack_sequences(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                   pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``prompt ++ completion`` rows.

    Returns (input_ids, attention_mask, completion_mask), each a [B,T] long tensor with
    T = max(len(prompt) + len(completion)); completion_mask is 1 exactly on completion tokens.
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"pack_sequences: {len(prompt_ids)} prompts but {len(completion_ids)} completions")
    if not prompt_ids:
        raise ValueError("pack_sequences: empty batch")
    rows = [(list(map(int, p)), list(map(int, c))) for p, c in zip(prompt_ids, completion_ids)]
    for i, (prompt, _) in enumerate(rows):
        if not prompt:
            raise ValueError(f"pack_sequences: row {i} has an empty prompt (the first completion token needs context)")
    width = max(len(p) + len(c) for p, c in rows)
    input_ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    completion_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (prompt, completion) in enumerate(rows):
        n_prompt, n_total = len(prompt), len(prompt) + len(completion)
        input_ids[i, :n_total] = torch.tensor(prompt + completion, dtype=torch.long)
        attention_mask[i, :n_total] = 1
        completion_mask[i, n_prompt:n_total] = 1
    return input_ids, attention_mask, completion_mask


def sequence_logprob_sums(token_logprobs: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """[B] sum over completion tokens of [B,T] token log-probs (DPO's log pi(y|x))."""
    return (token_logprobs * completion_mask.to(token_logprobs.dtype)).sum(-1)


__all__ = [
    "DEFAULT_CHUNK_BYTES", "auto_chunk_size", "length_sub_batches", "completion_logprobs", "final_hidden_states", "head_logits",
    "pack_sequences", "position_ids_from_mask", "reference_completion_logprobs", "sequence_logprob_sums",
    "unwrap",
]
