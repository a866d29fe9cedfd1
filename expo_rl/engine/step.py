"""The one training step shared by every method (SPEC 2, DeepSeekMath appendix A.1).

For the rows of a batch, each tagged with the loss term it belongs to, the step computes the
current completion log-probs WITH gradient, asks each term's gradient-coefficient function
(:mod:`expo_rl.core.coefficients`) for a detached per-token coefficient GC, and returns

    loss = scale * sum_k weight_k * sum_{i in term k, t} w[i,t] * (-GC[i,t] * log pi[i,t] + aux[i,t]) / D_k

where ``w`` and ``D_k`` come from the loss aggregation (:mod:`expo_rl.core.aggregation`:
``seq_mean`` = the paper, ``token_mean`` = DAPO, ``constant`` = Dr. GRPO) and ``aux`` is an
optional per-token loss with gradient (PPO's value loss). Under ``seq_mean`` the gradient of
``loss`` is exactly ``-grad J`` of each method's closed-form objective (tested against autograd
in tests/test_engine_step_gradients.py). A coefficient registered with
``own_normalisation=True`` (``dpo``, ``exp_sft``) gets ``w = 1`` and ``D_k`` = its number of
samples under every aggregation (``sample_sum``), so it is exact whatever the run's aggregation
(tests/test_step_own_normalisation.py). ``D_k`` is computed once over the whole global batch
(:func:`batch_normalisers`), so summing the gradients of the micro-batches (gradient
accumulation) and of the processes gives the full-batch gradient. A term's number of samples
is counted from its rows (a pair counts once) unless its source reports it (``samples=``: the
ExP-SFT term's questions drawn, SPEC 3.5), so dropped rows do not rescale the others.

Temperature: every log-prob of a step (the current policy's, pi_old's and pi_ref's) is taken
at one temperature ``T``, ``log_softmax(logits / T)`` (``temperature=`` of :func:`fixed_inputs`
and :func:`training_step`), as TRL's GRPOTrainer does. The rule the runtime applies
(``runtime.step_temperature``): ``T = sampling.temperature`` when any term of the run samples
from the current policy (GRPO, PPO, online RFT, online ExP-DPO, refreshed explanations), else
``T = 1``. So samples drawn at T are scored under the distribution they were drawn from (pi_old
= the sampler exactly, ratio 1 at the first inner update, the KL between the tempered policy
and the tempered reference), and fixed-data terms in the same run (the ExP-SFT term, DPO on
fixed pairs next to a sampling term) are scored at the same T, one distribution per step; a
run with no sampling term (SFT, RFT, offline DPO) trains the model's own T = 1 distribution.

How a runtime uses it (``expo_rl/engine/runtime.py`` is the real one)::

    terms = build_step_terms(config.terms)      # name, coefficient fn + hparams, weight, needs
    model = prepare_model(model, terms)         # adds PPO's value head; BEFORE the optimiser
    needs_ref, needs_old = step_needs(terms, mu=mu)
    for step in ...:
        rows = sources(...)                     # sampled batch, scored (rewards)
        micro_batches = [pack(...) ...]         # dict per micro-batch, keys below; whole groups/pairs
        for mb in micro_batches:                # fixed for the mu inner updates, no grad:
            fixed_inputs(model, mb, terms, reference_model=frozen, temperature=T)  # old/ref, old values
        norms = batch_normalisers(micro_batches, terms, aggregation=agg, samples=per_term_counts,
                                  num_processes=P, sum_over_processes=reduce_sum)
        for _ in range(mu):                     # inner epochs: pi_old = the sampler
            for mb in micro_batches:
                out = training_step(model, mb, terms, normalisers=norms, aggregation=agg, temperature=T)
                out.loss.backward()             # do NOT divide by the number of micro-batches
            optimizer.step(); optimizer.zero_grad()
        log(out.stats)                          # "<term>/objective", "<term>/clip_frac", ...

``fixed_inputs`` may be skipped: a key it would fill that is missing from the batch at the
first :func:`training_step` call is filled from that call's own forward pass (detached) and
written into the batch dict, which is correct as long as every micro-batch's first call comes
before the first optimiser update of the step (true for the loop above, and for any ``mu`` when
only ``old_logprobs``/``old_values`` are missing). ``ref_logprobs`` are never filled this way.

Batch keys (tensors on the model's device): ``input_ids``, ``attention_mask``,
``completion_mask`` [B, T]; per row [B]: ``term_index`` (long, index into the terms; default 0),
``rewards``, ``group_index`` (-1 = none), ``pair_index`` (-1 = none), ``pair_sign`` (+1/-1/0),
``truncated`` (1 = the sample hit the length cap; optional);
optional fixed per-token tensors [B, T]: ``old_logprobs``, ``ref_logprobs``, ``old_values``,
and ``advantages`` ([B] or [B, T], overriding a coefficient's own estimator); ``tis_weight``
[B, T]: truncated importance weights that multiply every term's GC (``core.mismatch``).

Several terms share one batch: ExP-GRPO is a ``grpo`` term on the sampled groups plus an
``exp_sft`` term with weight lambda on the self-explanation rows (SPEC 3.5).

PPO's value model: a head on the policy's detached final hidden states, see
:mod:`expo_rl.engine.value`; its clipped squared error is part of the ``ppo`` term.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from expo_rl.core.aggregation import (
    LOSS_AGGREGATIONS,
    SAMPLE_SUM,
    aggregate,
    check_aggregation,
    count_samples,
    denominator_from_counts,
)
from expo_rl.core.coefficients import (
    CoefficientFn,
    CoefficientInputs,
    Needs,
    coefficient_needs,
    get_coefficient,
    has_own_normalisation,
    resolve_hparams,
)
from expo_rl.core.masked import masked_mean
from expo_rl.engine.value import attach_value_head, capture_values
from expo_rl.policy import completion_logprobs

__all__ = ["LOSS_AGGREGATIONS", "Normalisers", "StepOutput", "StepTerm", "batch_normalisers",
           "build_step_terms", "fixed_inputs", "make_step_term", "prepare_model", "step_needs",
           "training_step"]

PER_ROW_KEYS = ("rewards", "group_index", "pair_index", "pair_sign", "truncated")
FIXED_KEYS = ("old_logprobs", "ref_logprobs", "old_values", "advantages")


@dataclass(frozen=True)
class StepTerm:
    """One loss term as the step sees it: a coefficient with its hyper-parameters and a weight.

    ``own_normalisation``: the coefficient's GC is exact as a plain sum over the term's tokens
    divided by its number of samples, so the term ignores the run's aggregation
    (:mod:`expo_rl.core.aggregation`, ``sample_sum``)."""

    name: str
    coefficient: str
    hparams: dict[str, Any]
    weight: float = 1.0
    needs: Needs = Needs()
    own_normalisation: bool = False

    @property
    def fn(self) -> CoefficientFn:
        return get_coefficient(self.coefficient)

    def aggregation(self, run_aggregation: str) -> str:
        """How this term's tokens are aggregated when the run aggregates with ``run_aggregation``."""
        return SAMPLE_SUM if self.own_normalisation else run_aggregation


def make_step_term(coefficient: str, *, name: str | None = None, weight: float = 1.0,
                   **hparams: Any) -> StepTerm:
    """A :class:`StepTerm` from plain values (hyper-parameters checked, defaults filled in)."""
    full = resolve_hparams(coefficient, hparams)
    return StepTerm(name or coefficient, coefficient, full, float(weight), coefficient_needs(coefficient, full),
                    has_own_normalisation(coefficient))


def build_step_terms(term_configs: Iterable[Any]) -> list[StepTerm]:
    """Step terms from config objects with ``coefficient``, ``coefficient_args``, ``weight`` and
    ``label`` (or ``name``) attributes, e.g. ``expo_rl.engine.config.TermConfig``."""
    terms = []
    for config in term_configs:
        name = getattr(config, "label", None) or getattr(config, "name", None) or config.coefficient
        terms.append(make_step_term(config.coefficient, name=name, weight=getattr(config, "weight", 1.0),
                                    **dict(getattr(config, "coefficient_args", None) or {})))
    return terms


def step_needs(step_terms: Sequence[StepTerm], *, mu: int = 1) -> tuple[bool, bool]:
    """(needs reference log-probs, needs old-policy log-probs computed before the updates).

    Old log-probs only matter with ``mu > 1``: at the first inner update pi_old = pi_theta.
    """
    needs_reference = any(t.needs.reference for t in step_terms)
    needs_old = mu > 1 and any(t.needs.old_logprobs or t.needs.values for t in step_terms)
    return needs_reference, needs_old


def prepare_model(model: torch.nn.Module, step_terms: Sequence[StepTerm]) -> torch.nn.Module:
    """Give ``model`` what the terms need (PPO: a value head). Call before building the
    optimiser and before ``accelerator.prepare``; returns ``model``."""
    if any(t.needs.values for t in step_terms):
        attach_value_head(model)
    return model


@dataclass(frozen=True)
class Normalisers:
    """Per-term denominators ``D_k`` over the global batch, and the loss scale.

    ``scale`` is the number of processes when the denominators are sums over all processes
    (DDP averages gradients, which this undoes), else 1.
    """

    per_term: tuple[float, ...]
    aggregation: str = "seq_mean"
    scale: float = 1.0


def _term_index(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    index = batch.get("term_index")
    if index is None:
        return torch.zeros(batch["input_ids"].shape[0], dtype=torch.long, device=batch["input_ids"].device)
    return index


def batch_normalisers(micro_batches: Sequence[dict[str, torch.Tensor]], step_terms: Sequence[StepTerm], *,
                      aggregation: str = "seq_mean", num_processes: int = 1,
                      sum_over_processes: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      constant_length: float | None = None,
                      samples: Sequence[float | None] | None = None) -> Normalisers:
    """``D_k`` for each term over all of this process's micro-batches (and, given
    ``sum_over_processes`` (e.g. ``lambda t: accelerator.reduce(t, "sum")``), over all
    processes: then the step is exact for any split of rows between processes; without it,
    each process normalises by its own rows, exact when every process has the same counts).

    ``constant_length`` is the ``constant`` aggregation's C (Dr. GRPO: the generation budget);
    when None it falls back to the longest completion in the batch.

    ``samples``: per term, this process's number of samples of the term's expectation when its
    source reports one (the ExP-SFT term: the questions drawn, including those without an
    explanation row), or None to count them from the rows (rows; a pair counts once). It
    replaces the row count in ``seq_mean``, ``constant`` and own-normalisation terms; under
    ``token_mean`` the tokens decide.
    """
    check_aggregation(aggregation)
    if samples is not None and len(samples) != len(step_terms):
        raise ValueError(f"{len(samples)} sample counts for {len(step_terms)} terms")
    if aggregation == "constant" and constant_length is None:
        longest = max((int(mb["completion_mask"].sum(-1).max()) for mb in micro_batches
                       if mb["completion_mask"].numel()), default=1)
        constant_length = float(max(longest, 1))
    counted = [0.0] * len(step_terms)
    tokens = [0.0] * len(step_terms)
    for mb in micro_batches:
        term_index = _term_index(mb)
        for k in range(len(step_terms)):
            rows = (term_index == k).nonzero().flatten()
            if rows.numel() == 0:
                continue
            pair_index = mb["pair_index"].index_select(0, rows) if "pair_index" in mb else None
            counted[k] += count_samples(pair_index, int(rows.numel()))
            tokens[k] += float(mb["completion_mask"].index_select(0, rows).to(torch.long).sum())
    if samples is not None:
        counted = [c if given is None else float(given) for c, given in zip(counted, samples)]
    scale = 1.0
    if sum_over_processes is not None and num_processes > 1:
        device = micro_batches[0]["input_ids"].device if micro_batches else None
        summed = sum_over_processes(torch.tensor(counted + tokens, dtype=torch.float64, device=device))
        values = [float(x) for x in summed.tolist()]
        counted, tokens = values[:len(step_terms)], values[len(step_terms):]
        scale = float(num_processes)
    totals = tuple(denominator_from_counts(term.aggregation(aggregation), samples=n, tokens=t,
                                           constant_length=constant_length)
                   for term, n, t in zip(step_terms, counted, tokens))
    return Normalisers(totals, aggregation, scale)


def _logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor], chunk_size: int | None,
              entropy: bool = False, buckets: bool = True, temperature: float = 1.0) -> Any:
    """Completion log-probs of the batch at ``temperature``; ``buckets``: shared prompts run once
    and length sub-batches (``completion_logprobs``), never while a value capture hooks the
    forward (it keeps one pass's hidden states)."""
    kwargs: dict[str, Any] = {"length_buckets": buckets, "shared_prefix": buckets, "temperature": temperature}
    if chunk_size is not None:
        kwargs["chunk_size"] = chunk_size
    if entropy:
        kwargs["return_entropy"] = True
    return completion_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"],
                               **kwargs)


def _needs(step_terms: Sequence[StepTerm]) -> Needs:
    return Needs(reference=any(t.needs.reference for t in step_terms),
                 old_logprobs=any(t.needs.old_logprobs for t in step_terms),
                 values=any(t.needs.values for t in step_terms))


@torch.no_grad()
def fixed_inputs(model: torch.nn.Module, batch: dict[str, torch.Tensor], step_terms: Sequence[StepTerm], *,
                 reference_model: torch.nn.Module | None = None, chunk_size: int | None = None,
                 temperature: float = 1.0) -> None:
    """Fill, in place and without gradient, the batch's fixed inputs the terms need and it
    lacks: ``old_logprobs`` and ``old_values`` (one forward of ``model``, the sampling policy)
    and ``ref_logprobs`` (a forward of ``reference_model``), both at the step's ``temperature``
    (module docstring). Call before the inner updates."""
    needs = _needs(step_terms)
    want_old = needs.old_logprobs and "old_logprobs" not in batch
    want_values = needs.values and "old_values" not in batch
    if want_old or want_values:
        with capture_values(model) if want_values else nullcontext() as capture:
            logprobs = _logprobs(model, batch, chunk_size, buckets=not want_values, temperature=temperature)
        if want_old:
            batch["old_logprobs"] = logprobs
        if want_values:
            batch["old_values"] = capture.values.detach()
    if needs.reference and "ref_logprobs" not in batch:
        if reference_model is None:
            raise ValueError("a loss term needs reference log-probs: pass reference_model or put "
                             "'ref_logprobs' in the batch")
        batch["ref_logprobs"] = _logprobs(reference_model, batch, chunk_size, temperature=temperature)


@dataclass
class StepOutput:
    """``loss``: the scalar to backpropagate (already normalised; do not divide it again).
    ``stats``: ``<term>/<key>`` -> detached 0-dim tensors or floats (``<term>/objective`` is the
    method's own objective J on this micro-batch, ``<term>/gc_mean``, ``<term>/gc_abs_mean``, ...).
    ``objectives``: term name -> J (detached)."""

    loss: torch.Tensor
    stats: dict[str, Any] = field(default_factory=dict)
    objectives: dict[str, torch.Tensor] = field(default_factory=dict)


def _select(tensor: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor | None:
    if tensor is None or rows is None:
        return tensor
    return tensor.index_select(0, rows)


def training_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], step_terms: Sequence[StepTerm], *,
                  normalisers: Normalisers, aggregation: str = "seq_mean", chunk_size: int | None = None,
                  fill_missing_old: bool = True, entropy: bool = False, temperature: float = 1.0) -> StepOutput:
    """One forward pass with gradient over ``batch`` and the summed loss of all its terms.

    See the module docstring for the batch keys and the loss. ``normalisers`` must come from
    :func:`batch_normalisers` over the whole step's batch with the same ``aggregation``. With
    ``fill_missing_old``, missing ``old_logprobs`` / ``old_values`` that a term needs are taken
    from this pass (detached) and stored in ``batch`` for the later inner updates. With
    ``entropy``, ``<term>/entropy`` (mean per-token entropy of pi_theta) is added to the stats,
    at the cost of one more pass over the vocabulary per token. ``temperature``: the step's
    temperature for the current policy's log-probs (module docstring); the fixed inputs in
    ``batch`` must have been computed at the same one.
    """
    check_aggregation(aggregation)
    if normalisers.aggregation != aggregation:
        raise ValueError(f"normalisers were computed for {normalisers.aggregation!r}, the step "
                         f"aggregates with {aggregation!r}")
    if len(normalisers.per_term) != len(step_terms):
        raise ValueError(f"{len(normalisers.per_term)} normalisers for {len(step_terms)} terms")
    needs = _needs(step_terms)
    with capture_values(model) if needs.values else nullcontext() as capture:
        logprobs = _logprobs(model, batch, chunk_size, entropy, buckets=not needs.values, temperature=temperature)
    if entropy:
        logprobs, token_entropy = logprobs
    values = capture.values if needs.values else None
    if fill_missing_old:
        if needs.old_logprobs and "old_logprobs" not in batch:
            batch["old_logprobs"] = logprobs.detach()
        if needs.values and "old_values" not in batch:
            batch["old_values"] = values.detach()

    mask = batch["completion_mask"]
    term_index = _term_index(batch)
    total = (logprobs * 0).sum()  # keeps the graph even if no term has rows here
    stats: dict[str, Any] = {}
    objectives: dict[str, torch.Tensor] = {}
    for k, term in enumerate(step_terms):
        if term.needs.reference and "ref_logprobs" not in batch:
            raise ValueError(f"loss term {term.name!r} ({term.coefficient}) needs 'ref_logprobs' in the "
                             f"batch: the frozen reference policy's completion log-probs")
        selected = term_index == k
        if not bool(selected.any()):
            continue
        rows = None if bool(selected.all()) else selected.nonzero().flatten()
        term_logprobs = _select(logprobs, rows)
        term_mask = _select(mask, rows)
        inputs = CoefficientInputs(
            logprobs=term_logprobs.detach(),
            completion_mask=term_mask,
            values=_select(values, rows) if term.needs.values else None,
            **{key: _select(batch.get(key), rows) for key in PER_ROW_KEYS + FIXED_KEYS},
        )
        out = term.fn(inputs, **term.hparams)
        gc = out.gc.detach()
        tis = _select(batch.get("tis_weight"), rows)  # truncated importance weights (core.mismatch)
        if tis is not None:
            gc = gc * tis.to(gc.dtype)
        token_loss = -gc.to(term_logprobs.dtype) * term_logprobs
        if out.aux_token_loss is not None:
            token_loss = token_loss + out.aux_token_loss.to(token_loss.dtype)
        total = total + term.weight * aggregate(token_loss, term_mask, term.aggregation(aggregation),
                                                normalisers.per_term[k])

        objectives[term.name] = out.objective
        stats[f"{term.name}/objective"] = out.objective
        stats[f"{term.name}/gc_mean"] = masked_mean(out.gc, term_mask).detach()
        stats[f"{term.name}/gc_abs_mean"] = masked_mean(out.gc.abs(), term_mask).detach()
        if entropy:
            stats[f"{term.name}/entropy"] = masked_mean(_select(token_entropy, rows), term_mask).detach()
        for key, value in out.stats.items():
            stats[f"{term.name}/{key}"] = value
    return StepOutput(total * normalisers.scale, stats, objectives)
