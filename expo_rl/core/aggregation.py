"""Loss aggregation: how per-token loss terms become one number (SPEC 2, "normaliser").

For a term with per-token loss ``l[i, t]`` over its rows:

- ``seq_mean`` (the paper, DeepSeekMath eqs. 6-21): ``(1/N) sum_i (1/|o_i|) sum_t l[i, t]``,
  N = the number of samples of the expectation: rows, except that the two rows of a
  preference pair (same ``pair_index >= 0``) are one sample, as in eq. 13.
- ``token_mean`` (DAPO): ``sum_{i,t} l[i, t] / sum_i |o_i|``, every token weighs the same.
- ``constant`` (Dr. GRPO): ``sum_{i,t} l[i, t] / (N * C)`` with a fixed length ``C`` (the
  generation budget), so neither the sequence length nor the batch's token count rescales it.

and, not a user choice but what a term whose coefficient defines its own normalisation gets
under every aggregation (``dpo``, ``exp_sft``: their GC already holds every per-token weight
of their objective):

- ``sample_sum``: ``sum_{i,t} l[i, t] / N``.

``N``, the number of samples of the term's expectation, is counted from the rows unless the
term's data source reports it (the ExP-SFT term: the questions it drew, including those that
gave no explanation row, so a dropped row does not rescale the others).

The loss splits as ``sum_{i,t} w[i, t] * l[i, t] / D``: :func:`token_weights` gives ``w``
(per micro-batch) and :func:`denominator_from_counts` gives ``D`` from the term's sample and
token counts, which must be summed over the whole global batch so that micro-batches
(gradient accumulation) and processes add up to exactly the full-batch loss.
"""

from __future__ import annotations

import torch

from expo_rl.core.masked import sequence_lengths

LOSS_AGGREGATIONS = ("seq_mean", "token_mean", "constant")
SAMPLE_SUM = "sample_sum"  # a coefficient's own normalisation (module docstring); not a config value


def check_aggregation(aggregation: str) -> None:
    if aggregation not in LOSS_AGGREGATIONS:
        raise ValueError(f"loss aggregation {aggregation!r} is not allowed; allowed values: "
                         f"{', '.join(LOSS_AGGREGATIONS)}")


def count_samples(pair_index: torch.Tensor | None, num_rows: int) -> int:
    """Samples of the expectation among ``num_rows`` rows: unpaired rows + distinct pairs."""
    if pair_index is None or num_rows == 0:
        return num_rows
    paired = pair_index >= 0
    return int((~paired).sum()) + int(torch.unique(pair_index[paired]).numel())


def _check_internal(aggregation: str) -> None:
    if aggregation != SAMPLE_SUM:
        check_aggregation(aggregation)


def token_weights(completion_mask: torch.Tensor, aggregation: str, dtype: torch.dtype = torch.float32
                  ) -> torch.Tensor:
    """``w[i, t]``: ``1/|o_i|`` on completion tokens for ``seq_mean``, 1 otherwise; 0 off the
    mask. [B, T] -> [B, T] of ``dtype``."""
    _check_internal(aggregation)
    mask = completion_mask.to(dtype)
    if aggregation == "seq_mean":
        return mask / sequence_lengths(completion_mask).clamp(min=1).to(mask.dtype).unsqueeze(-1)
    return mask


def denominator_from_counts(aggregation: str, *, samples: float, tokens: float,
                            constant_length: float | None = None) -> float:
    """``D`` from the counts of a term's samples ``N`` and completion tokens.

    ``seq_mean`` and ``sample_sum``: ``N``; ``token_mean``: the tokens; ``constant``:
    ``N * constant_length`` (required).
    """
    _check_internal(aggregation)
    if aggregation in ("seq_mean", SAMPLE_SUM):
        return float(samples)
    if aggregation == "token_mean":
        return float(tokens)
    if constant_length is None or constant_length <= 0:
        raise ValueError("loss aggregation 'constant' (Dr. GRPO) needs constant_length > 0, "
                         "the generation budget in tokens (e.g. max_new_tokens)")
    return float(samples) * float(constant_length)


def aggregate(token_loss: torch.Tensor, completion_mask: torch.Tensor, aggregation: str,
              denominator_value: float) -> torch.Tensor:
    """``sum_{i,t} w[i, t] * token_loss[i, t] / D`` (a scalar with the graph of ``token_loss``)."""
    weights = token_weights(completion_mask, aggregation, token_loss.dtype)
    return (weights * token_loss).sum() / max(float(denominator_value), 1e-12)
