"""The training loop: every method runs through these lines (SPEC section 2).

Per step: each term's source yields rows (sampling from the current or frozen policy as the
source requires) -> rows without a reward are scored -> rows are split into ``grad_accum``
micro-batches of whole groups/pairs -> old-policy and reference log-probs (no grad) -> ``mu``
optimiser updates, each over all micro-batches, through the shared step -> metrics -> checkpoint.

The same code runs on one process or many under ``accelerate`` (DDP, FSDP, DeepSpeed): sources
hand each process its share of the step's global batch, each term's loss denominator is summed
over all processes (so the averaged gradient is exactly the full-batch gradient, whatever the
split), and checkpoints are collective.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from expo_rl.engine import checkpoint
from expo_rl.engine.batching import pack, split_micro_batches, tag_rows
from expo_rl.engine.config import RunConfig, config_dict, resume_warnings
from expo_rl.engine.lora_policy import BaseModelReference, load_base, wrap_lora
from expo_rl.engine.metrics import MetricsLogger
from expo_rl.engine.optim import build_optimizer, build_scheduler
from expo_rl.engine.recipe import FrozenPolicy, Term, build_terms, disable_dropout, load_problem_set
from expo_rl.engine.rollout_stats import row_metrics
from expo_rl.engine.rollouts import apply_sampler_correction, build_rollout, sampler_metrics
from expo_rl.engine.step import (
    StepTerm,
    batch_normalisers,
    build_step_terms,
    fixed_inputs,
    prepare_model,
    step_needs,
    training_step,
)
from expo_rl.policy import completion_logprobs, load_policy
from expo_rl.sources import Row, StepContext


@dataclass
class Run:
    """Everything a step needs, built once by :func:`setup`."""

    config: RunConfig
    accelerator: Any
    model: Any
    tokenizer: Any
    frozen: FrozenPolicy
    terms: list[Term]
    step_terms: list[StepTerm]
    needs_reference: bool
    needs_old: bool
    optimizer: Any
    scheduler: Any
    output_dir: Path
    rollout: Any = None  # the rollout engine (sampling.engine: vllm), None for the built-in loop


def make_accelerator(config: RunConfig) -> Any:
    from accelerate import Accelerator

    on_gpu = torch.cuda.is_available()
    precision = config.train.mixed_precision
    # bf16 autocast is a GPU feature here; on CPU it would only slow fp32 kernels down.
    mixed = "bf16" if on_gpu and precision in ("auto", "bf16") else "no"
    return Accelerator(cpu=not on_gpu, mixed_precision=mixed,
                       gradient_accumulation_steps=config.train.grad_accum)


def setup(config: RunConfig, accelerator: Any) -> Run:
    """Model, frozen copy, sources, optimiser and schedule for ``config``."""
    from accelerate.utils import set_seed

    set_seed(config.train.seed)
    output_dir = Path(config.train.output_dir)
    dtype = getattr(torch, config.model.dtype)
    lora = config.model.lora
    model, tokenizer = load_base(config.model.policy, lora, lambda: load_policy(
        config.model.policy, dtype=dtype, device=str(accelerator.device)))
    disable_dropout(model)
    if lora.r > 0:  # after disable_dropout: lora.dropout applies to the adapter input
        model = wrap_lora(model, lora)
    if config.model.gradient_checkpointing:
        enable_activation_checkpointing(model)
    model.train()
    step_terms = build_step_terms(config.terms)
    needs_reference, needs_old = step_needs(step_terms, mu=config.train.mu)
    load_frozen = lambda: load_policy(config.model.policy, dtype=dtype)[0]  # noqa: E731
    frozen = (BaseModelReference(model, load_frozen, accelerator.device) if lora.r > 0
              else FrozenPolicy(load_frozen, accelerator.device, eager=needs_reference))
    prepare_model(model, step_terms)  # PPO's value head, before the optimiser

    problems = load_problem_set(config)
    rollout = build_rollout(config, model, tokenizer,  # before prepare: the full weights are here
                            full_sync=accelerator.distributed_type in ("FSDP", "DEEPSPEED"))
    terms = build_terms(config, problems, tokenizer=tokenizer, frozen=frozen,
                        accelerator=accelerator, output_dir=output_dir, rollout=rollout)
    for term in terms:
        term.source.prepare(term.env)

    updates = config.train.steps * config.train.mu
    o = config.optim
    optimizer = build_optimizer(model.parameters(), lr=o.lr, weight_decay=o.weight_decay,
                                betas=o.betas, eps=o.eps)
    scheduler = build_scheduler(optimizer, total_updates=updates, schedule=o.schedule,
                                warmup_ratio=o.warmup_ratio, min_lr_ratio=o.min_lr_ratio)
    model, optimizer = accelerator.prepare(model, optimizer)
    if accelerator.gradient_accumulation_steps != config.train.grad_accum:
        raise ValueError(f"the accelerate/DeepSpeed config sets gradient_accumulation_steps="
                         f"{accelerator.gradient_accumulation_steps} but train.grad_accum="
                         f"{config.train.grad_accum}; set gradient_accumulation_steps: auto")
    # Not prepared: accelerate would step a prepared scheduler once per process per update.
    accelerator.register_for_checkpointing(scheduler)
    return Run(config, accelerator, model, tokenizer, frozen, terms, step_terms, needs_reference,
               needs_old, optimizer, scheduler, output_dir, rollout)


@contextmanager
def policy_for_generation(accelerator: Any, model: Any) -> Iterator[Any]:
    """The current policy as a plain module for sampling.

    Under ZeRO-3 and FSDP the parameters are sharded and every forward is a collective, which
    generation of unequal lengths per process would deadlock; as TRL's
    ``unwrap_model_for_generation`` does, the full parameters are gathered for the duration.
    """
    from accelerate.utils import DistributedType

    unwrapped = accelerator.unwrap_model(model)
    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED and accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            yield unwrapped
    elif kind == DistributedType.FSDP:
        from torch.distributed.fsdp import FullyShardedDataParallel

        if not isinstance(model, FullyShardedDataParallel):
            raise RuntimeError("sampling under FSDP2 is not supported: use fsdp_version: 1 "
                               "(expo_rl/presets/accelerate/fsdp.yaml)")
        with FullyShardedDataParallel.summon_full_params(model, writeback=False, recurse=True):
            yield unwrapped
    else:
        yield unwrapped


def enable_activation_checkpointing(model: Any) -> None:
    """Recompute activations in backward (non-reentrant, so frozen inputs still get gradients)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 renamed it
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def train(config: RunConfig, *, resume: bool = False) -> dict[str, Any]:
    """Run ``config`` to ``train.steps``; with ``resume``, continue from the last complete
    checkpoint in ``train.output_dir``. Returns a small summary."""
    accelerator = make_accelerator(config)
    run = setup(config, accelerator)
    if accelerator.is_main_process:
        for note in resume_warnings(config):
            print(f"warning: {note}")
    ckpt_root = run.output_dir / "checkpoints"
    start = 0
    latest = checkpoint.find_latest_checkpoint(ckpt_root) if resume else None
    if latest is not None:
        state = checkpoint.load_checkpoint(accelerator, latest)
        start = state["step"]
        changed = changed_keys(state.get("config", {}), config_dict(config))
        if changed and accelerator.is_main_process:
            print(f"warning: resuming {latest} with a config that differs in: {', '.join(changed)}")
        for term in run.terms:
            term.source.load_state_dict(state["sources"][term.name])
    logger = MetricsLogger(run.output_dir, enabled=accelerator.is_main_process,
                           tensorboard=config.train.tensorboard,
                           resume_step=start if latest is not None else None)
    saved = latest
    bar = tqdm(range(start + 1, config.train.steps + 1), desc=config.method or "train", unit="step",
               initial=start, total=config.train.steps,
               disable=not (config.train.progress and accelerator.is_main_process))
    for step in bar:
        metrics = train_step(run, step)
        logger.log(step, metrics)
        bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items() if k.endswith("reward_mean")})
        every = config.train.save_every
        if step == config.train.steps or (every and step % every == 0):
            saved = save(run, step)
    logger.close()
    return {"steps": config.train.steps, "metrics": str(logger.path), "checkpoint": str(saved),
            "is_main_process": accelerator.is_main_process}


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [k for key in sorted(set(old) | set(new))
                for k in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def save(run: Run, step: int) -> Path:
    state = {"step": step, "sources": {t.name: t.source.state_dict() for t in run.terms},
             "config": config_dict(run.config)}
    return checkpoint.save_checkpoint(run.accelerator, run.output_dir / "checkpoints", step,
                                      model=run.model, tokenizer=run.tokenizer, trainer_state=state,
                                      keep_last=run.config.train.keep_last or None)


def train_step(run: Run, step: int) -> dict[str, float]:
    """One training step: sample, score, log-probs, ``mu`` updates; returns its metrics."""
    started = time.perf_counter()
    rows_per_term = collect_rows(run, step)
    sampled = time.perf_counter()
    pad_id = run.tokenizer.pad_token_id
    pad_id = run.tokenizer.eos_token_id if pad_id is None else pad_id
    micro_batches = [pack(rows, pad_id=pad_id, device=run.accelerator.device)
                     for rows in split_micro_batches(tag_rows(rows_per_term), run.config.train.grad_accum)]
    for batch in micro_batches:
        add_fixed_inputs(run, batch)
    stats, grad_norm, lr = update(run, micro_batches, normalisers(run, micro_batches))
    updated = time.perf_counter()

    metrics = mean_over_processes(run.accelerator, {**stats, **entropy_metrics(run, micro_batches),
                                                    **sampler_metrics(micro_batches, run.config.sampling.tis_cap),
                                                    **(run.rollout.stats() if run.rollout else {})})
    metrics.update(row_metrics(run.accelerator, run.terms, rows_per_term))
    metrics.update(mean_over_processes(run.accelerator, source_metrics(run)))
    metrics["optim/lr"] = lr  # of the step's last update
    metrics["optim/grad_norm"] = grad_norm  # before clipping, at the last update
    metrics["time/sample_s"] = sampled - started
    metrics["time/update_s"] = updated - sampled
    metrics["time/step_s"] = time.perf_counter() - started
    if torch.cuda.is_available():  # the trainer's and a colocated vLLM engine's tensors together
        metrics["memory/peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return metrics


def source_metrics(run: Run) -> dict[str, float]:
    """What sources report about the step's data (explanation acceptance, skipped pairs, ...) as
    ``<term>/<key with '/' -> '_'>``, e.g. ``exp_sft/explain_acceptance_rate`` (SPEC 3.6)."""
    metrics: dict[str, float] = {}
    for term in run.terms:
        report = getattr(term.source, "metrics", None)
        if callable(report):
            metrics.update({f"{term.name}/{key.replace('/', '_')}": float(value) for key, value in report().items()})
    return metrics


def collect_rows(run: Run, step: int) -> list[list[Row]]:
    """Each term's rows for this step, scored, in recipe order (a source sees earlier terms' rows)."""
    scored: dict[str, list[Row]] = {}
    with policy_for_generation(run.accelerator, run.model) as policy:
        for term in run.terms:
            rows = term.source.next_rows(StepContext(step, policy, rows=dict(scored)))
            term.env.score(rows)
            scored[term.name] = rows
    return list(scored.values())


def update(run: Run, micro_batches: list[dict[str, torch.Tensor]], totals: Any
           ) -> tuple[dict[str, float], float, float]:
    """``mu`` optimiser updates, each accumulating over all micro-batches.

    Returns the step's statistics averaged over micro-batches and inner updates, the gradient
    norm before clipping and the learning rate, both at the last update.
    """
    accelerator, cfg = run.accelerator, run.config.train
    stats: dict[str, list[float]] = {}
    grad_norm, lr = 0.0, 0.0
    for _inner in range(cfg.mu):
        for batch in micro_batches:
            with accelerator.accumulate(run.model):
                output = training_step(run.model, batch, run.step_terms, normalisers=totals,
                                       aggregation=cfg.loss_aggregation)
                # The step normalises over the whole batch already; accelerate (and DeepSpeed)
                # divide by the number of micro-batches again, which this factor undoes.
                accelerator.backward(output.loss * cfg.grad_accum)
                if accelerator.sync_gradients:
                    grad_norm = clip_gradients(run)
                    lr = run.optimizer.param_groups[0]["lr"]
                    run.optimizer.step()
                    run.scheduler.step()
                    run.optimizer.zero_grad(set_to_none=True)
            for key, value in output.stats.items():
                stats.setdefault(key, []).append(float(value))
    return {k: sum(v) / len(v) for k, v in stats.items()}, grad_norm, lr


def add_fixed_inputs(run: Run, batch: dict[str, torch.Tensor]) -> None:
    """What stays fixed during the ``mu`` inner updates, computed without grad before any of
    them: pi_old log-probs (the sampling policy) with its per-token entropy (logged), PPO's old
    values, and pi_ref log-probs. With ``mu = 1`` and ``train.log_entropy: false`` the step takes
    pi_old from its own first forward pass instead, so only the reference costs a pass here."""
    args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    # the frozen copy is not prepared, so it gets the policy's autocast explicitly
    with torch.no_grad(), run.accelerator.autocast():
        if run.needs_reference:
            with run.frozen.reference() as reference:  # LoRA: the policy with adapters disabled
                batch["ref_logprobs"] = completion_logprobs(reference, *args, length_buckets=True)
        # sampler log-probs (vllm engine) are compared with pi_old before any update
        if run.needs_old or run.config.train.log_entropy or "sampler_logprobs" in batch:
            batch["old_logprobs"], batch["entropy"] = completion_logprobs(
                run.model, *args, return_entropy=True, length_buckets=True)
            fixed_inputs(run.model, batch, run.step_terms)  # PPO's old values
    apply_sampler_correction(batch, run.config.sampling.tis_cap)


def entropy_metrics(run: Run, micro_batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """``<term>/entropy``: mean per-token entropy of the sampling policy on the term's tokens."""
    totals: dict[str, list[float]] = {}
    for batch in micro_batches:
        if "entropy" not in batch:
            return {}
        mask = batch["completion_mask"].float()
        for k, term in enumerate(run.step_terms):
            rows = batch["term_index"] == k
            total = totals.setdefault(f"{term.name}/entropy", [0.0, 0.0])
            total[0] += float((batch["entropy"][rows] * mask[rows]).sum())
            total[1] += float(mask[rows].sum())
    return {k: s / n for k, (s, n) in totals.items() if n > 0}


def normalisers(run: Run, micro_batches: list[dict[str, torch.Tensor]]) -> Any:
    """Each term's loss denominator over the global batch (all micro-batches, all processes)."""
    accelerator = run.accelerator
    return batch_normalisers(micro_batches, run.step_terms, aggregation=run.config.train.loss_aggregation,
                             num_processes=accelerator.num_processes,
                             sum_over_processes=lambda t: accelerator.reduce(t, reduction="sum"),
                             constant_length=float(run.config.sampling.max_new_tokens))


def clip_gradients(run: Run) -> float:
    """Clip to ``optim.max_grad_norm`` (no clipping when null); the norm before clipping."""
    max_norm = run.config.optim.max_grad_norm
    norm = run.accelerator.clip_grad_norm_(run.model.parameters(),
                                           max_norm if max_norm is not None else float("inf"))
    return float(norm) if norm is not None else float("nan")


def mean_over_processes(accelerator: Any, values: dict[str, float]) -> dict[str, float]:
    """Per-key mean over the processes that have the key (a term may have no rows on one)."""
    if accelerator.num_processes == 1:
        return dict(sorted(values.items()))
    from accelerate.utils import gather_object

    parts = gather_object([values])
    keys = sorted({k for part in parts for k in part})
    return {k: sum(p[k] for p in parts if k in p) / sum(1 for p in parts if k in p) for k in keys}


__all__ = ["Run", "make_accelerator", "setup", "train", "train_step"]
