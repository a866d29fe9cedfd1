"""The ExP-SFT gradient coefficient ``exp_sft`` (SPEC 3.5, ExPO paper eq. 9).

ExP-GRPO adds ``lambda * log pi_theta(c~, a* | q)`` to the GRPO objective, where
``log pi(o|q) = sum_t log pi(o_t | q, o_<t)`` is summed over the output tokens (SPEC 1). In the
unified gradient ``(1/|o|) sum_t GC * grad log pi(o_t | ...)`` (the shared step's ``seq_mean``
aggregation applies the ``1/|o|``), the exact coefficient of the summed log-likelihood is
``GC = |o|`` on every token: each token of the explanation weighs 1, as in the paper. The term's
weight is lambda; the step averages the term over its rows (one row per question gives the
paper's ``E_q[... + lambda log pi(c~, a*|q)]``).

``length_normalized=True`` gives the per-token mean ``(1/|o|) log pi(o|q)`` instead (identical
to the ``sft`` coefficient): a smaller, length-independent weight, for when the summed term
dominates the GRPO gradient.

Objective: the mean over rows of ``log pi(o|q)`` (or its per-token mean); stats: ``nll`` (the
rows' per-token NLL under the current policy: the explanations' NLL logged during training)
and ``seq_logprob``.
"""

from __future__ import annotations

from expo_rl.core.coefficients import CoefficientInputs, Coefficients, register_coefficient
from expo_rl.core.masked import masked_mean, sequence_lengths


@register_coefficient("exp_sft")
def exp_sft(inputs: CoefficientInputs, *, length_normalized: bool = False) -> Coefficients:
    """ExP-SFT: ``J = E log pi(o|q)`` (summed over tokens); ``GC = |o|`` (or 1 when length-normalised)."""
    mask = inputs.completion_mask.to(inputs.logprobs.dtype)
    lengths = sequence_lengths(inputs.completion_mask).to(mask.dtype)
    seq_logprob = (inputs.logprobs * mask).sum(-1)
    if length_normalized:
        gc = mask
        objective = (seq_logprob / lengths.clamp(min=1)).mean()
    else:
        gc = mask * lengths.unsqueeze(-1)
        objective = seq_logprob.mean()
    stats = {
        "nll": (-masked_mean(inputs.logprobs, mask)).detach(),
        "seq_logprob": seq_logprob.mean().detach(),
    }
    return Coefficients(gc.detach(), objective.detach(), stats)
