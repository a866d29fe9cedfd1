"""The ExP-SFT gradient coefficient ``exp_sft`` (SPEC 3.5, ExPO paper eq. 9).

ExP-GRPO adds ``lambda * log pi_theta(c~, a* | q)`` to the GRPO objective, where
``log pi(o|q) = sum_t log pi(o_t | q, o_<t)`` is summed over the output tokens (SPEC 1):

    J_ExP-SFT = (1/Q) sum_{explanation rows i} sum_t log pi(o_i,t | q_i, o_i,<t)

with ``Q`` the number of questions the term's source drew this step (over all processes): a
question without a usable explanation, or skipped by ``only_zero_signal``, adds nothing to the
sum but still counts, so lambda's effective size does not change from step to step (the
``explanations`` source reports ``Q``; without a report the step counts the rows). The term's
weight is lambda.

The coefficient has its own normalisation (``own_normalisation=True``): ``GC = 1`` on every
token, summed and divided by ``Q`` under every ``train.loss_aggregation``. ``length_normalized=True``
gives the per-token mean ``(1/|o|) log pi(o|q)`` per row instead (``GC = 1/|o|``): a smaller,
length-independent weight, for when the summed term dominates the GRPO gradient.

Objective: the mean over this micro-batch's rows of ``log pi(o|q)`` (or its per-token mean),
without lambda; stats: ``nll`` (the rows' per-token NLL under the current policy: the
explanations' NLL logged during training) and ``seq_logprob``.
"""

from __future__ import annotations

from expo_rl.core.coefficients import CoefficientInputs, Coefficients, register_coefficient
from expo_rl.core.masked import masked_mean, sequence_lengths


@register_coefficient("exp_sft", own_normalisation=True)
def exp_sft(inputs: CoefficientInputs, *, length_normalized: bool = False) -> Coefficients:
    """ExP-SFT: ``J = (1/Q) sum_rows log pi(o|q)`` (summed over tokens); ``GC = 1`` (``1/|o|``
    when length-normalised), own normalisation over the questions drawn."""
    mask = inputs.completion_mask.to(inputs.logprobs.dtype)
    lengths = sequence_lengths(inputs.completion_mask).to(mask.dtype).clamp(min=1)
    seq_logprob = (inputs.logprobs * mask).sum(-1)
    if length_normalized:
        gc = mask / lengths.unsqueeze(-1)
        objective = (seq_logprob / lengths).mean()
    else:
        gc = mask
        objective = seq_logprob.mean()
    stats = {
        "nll": (-masked_mean(inputs.logprobs, mask)).detach(),
        "seq_logprob": seq_logprob.mean().detach(),
    }
    return Coefficients(gc.detach(), objective.detach(), stats)
