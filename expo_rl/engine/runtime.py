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

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from expo_rl.engine import checkpoint, guards, held_out, run_dir
from expo_rl.engine.batching import pack, split_micro_batches, tag_rows
from expo_rl.engine.config import RunConfig, config_dict, resume_warnings
from expo_rl.engine.lora_policy import BaseModelReference, wrap_lora
from expo_rl.engine.metrics import MetricsLogger
from expo_rl.engine.optim import build_optimizer, build_scheduler
from expo_rl.engine.prompt_limits import screen_overlong
from expo_rl.engine.recipe import (
    BuiltTerm,
    FrozenPolicy,
    Parts,
    ProblemSet,
    build_terms,
    disable_dropout,
    load_parts,
    prompt_function,
)
from expo_rl.engine.rollout_stats import row_metrics, verifier_metrics
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
from expo_rl.policy import completion_logprobs
from expo_rl.sources import Row, StepContext
from expo_rl.verify import verifier_stats


@dataclass
class Run:
    """Everything a step needs, built once by :func:`setup`."""

    config: RunConfig
    accelerator: Any
    model: Any
    tokenizer: Any
    frozen: FrozenPolicy
    terms: list[BuiltTerm]
    step_terms: list[StepTerm]
    needs_reference: bool
    needs_old: bool
    optimizer: Any
    scheduler: Any
    output_dir: Path
    problem_set: ProblemSet
    temperature: float = 1.0  # of every log-prob of the step (step_temperature)
    skipped_updates: int = 0  # updates dropped by the non-finite guard (expo_rl.engine.guards)
    rollout: Any = None  # the rollout engine (sampling.engine: vllm), None for the built-in loop


def make_accelerator(config: RunConfig) -> Any:
    from accelerate import Accelerator

    on_gpu = torch.cuda.is_available()
    precision = config.train.mixed_precision
    # auto: bf16 on GPU only. An explicit bf16 holds on CPU too (autocast to bf16 kernels, which
    # CPUs with AVX-512 BF16 / AMX may run faster than fp32: bench/precision.py measures it).
    mixed = "bf16" if precision == "bf16" or (on_gpu and precision == "auto") else "no"
    return Accelerator(cpu=not on_gpu, mixed_precision=mixed,
                       gradient_accumulation_steps=config.train.grad_accum)


def setup(config: RunConfig, accelerator: Any, parts: Parts | None = None) -> Run:
    """Model, frozen copy, sources, optimiser and schedule for ``config``; ``parts``: the model,
    tokenizer and problems built by the caller (``expo_rl.train``), else loaded from ``config``."""
    from accelerate.utils import set_seed

    set_seed(config.train.seed)
    output_dir = Path(config.train.output_dir)
    parts = parts or load_parts(config, accelerator.device)
    model, tokenizer = parts.model, parts.tokenizer
    lora = config.model.lora
    disable_dropout(model)
    if lora.r > 0:  # after disable_dropout: lora.dropout applies to the adapter input
        model = wrap_lora(model, lora)
    if config.model.gradient_checkpointing:
        enable_activation_checkpointing(model)
    model.train()
    step_terms = build_step_terms(config.terms)
    needs_reference, needs_old = step_needs(step_terms, mu=config.train.mu)
    frozen = (BaseModelReference(model, parts.initial_policy, accelerator.device) if lora.r > 0
              else FrozenPolicy(parts.initial_policy, accelerator.device, eager=needs_reference))
    prepare_model(model, step_terms)  # PPO's value head, before the optimiser

    problem_set = parts.problems
    train_problems = screen_overlong(problem_set.train, model=model, tokenizer=tokenizer,
                                     prompt=prompt_function(config, tokenizer, problem_set.task),
                                     on_overlong=config.data.on_overlong,
                                     max_new_tokens=config.sampling.max_new_tokens,
                                     announce=accelerator.is_main_process)
    problem_set = dataclasses.replace(problem_set, train=train_problems)
    rollout = build_rollout(config, model, tokenizer,  # before prepare: the full weights are here
                            full_sync=accelerator.distributed_type in ("FSDP", "DEEPSPEED"))
    terms = build_terms(config, problem_set, tokenizer=tokenizer, frozen=frozen,
                        accelerator=accelerator, output_dir=output_dir, rollout=rollout)
    for term in terms:
        term.source.prepare(term.env)
    temperature = step_temperature(config.sampling.temperature, [term.source for term in terms])

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
               needs_old, optimizer, scheduler, output_dir, problem_set, temperature, rollout=rollout)


def step_temperature(sampling_temperature: float, sources: list[Any]) -> float:
    """The one temperature of every log-prob of the step (policy, old, reference): the sampling
    temperature when any term's source samples from the current policy
    (``source.samples_current_policy``), else 1; 1 for greedy sampling (temperature 0). See
    the rule in :mod:`expo_rl.engine.step`."""
    on_policy = any(getattr(source, "samples_current_policy", False) for source in sources)
    return float(sampling_temperature) if on_policy and sampling_temperature > 0 else 1.0


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


def train(config: RunConfig, *, resume: bool = False, overwrite: bool = False,
          parts: Parts | None = None) -> dict[str, Any]:
    """Run ``config`` to ``train.steps``; with ``resume``, continue from the last complete
    checkpoint in ``train.output_dir``; ``overwrite`` replaces a run already there (without
    either, a used output directory is refused). The directory is locked while training
    (expo_rl.engine.run_dir). ``parts``: the model, tokenizer and problems as objects
    (``expo_rl.train``); without them they are loaded from ``config`` (the YAML path). Returns a
    small summary."""
    lock = None
    if run_dir.is_main_process():
        lock = run_dir.lock_output(config.train.output_dir, run_dir.command_line())
    try:
        if lock is not None:
            run_dir.claim_train_dir(config.train.output_dir, resume=resume, overwrite=overwrite)
        return _train(config, resume=resume, parts=parts)
    finally:
        if lock is not None:
            lock.release()


def _train(config: RunConfig, *, resume: bool, parts: Parts | None) -> dict[str, Any]:
    accelerator = make_accelerator(config)
    run = setup(config, accelerator, parts)
    if accelerator.is_main_process:
        run_dir.check_can_save(run.output_dir / "checkpoints", **run_dir.model_size(run.model))
    if accelerator.is_main_process:
        for note in resume_warnings(config):
            print(f"warning: {note}")
    ckpt_root = run.output_dir / "checkpoints"
    start = 0
    latest = checkpoint.find_latest_finite_checkpoint(ckpt_root) if resume else None
    if latest is not None:
        state = checkpoint.load_checkpoint(accelerator, latest)
        start = state["step"]
        changed = changed_keys(state.get("config", {}), config_dict(config))
        if changed and accelerator.is_main_process:
            print(f"warning: resuming {latest} with a config that differs in: {', '.join(changed)}")
        for term in run.terms:
            term.source.load_state_dict(state["sources"][term.name])
    logger = MetricsLogger(run.output_dir, enabled=accelerator.is_main_process,
                           tensorboard=config.train.tensorboard, report_to=config.train.report_to,
                           project=config.train.project, run_config=config_dict(config),
                           resume_step=start if latest is not None else None)
    saved = latest
    bar = tqdm(range(start + 1, config.train.steps + 1), desc=config.method or "train", unit="step",
               initial=start, total=config.train.steps,
               disable=not (config.train.progress and accelerator.is_main_process))
    if start == 0 and (config.eval.every or config.eval.initial):
        before = evaluate_held_out(run) if config.eval.every else {}
        if config.eval.initial and config.eval.final_n:
            before.update(evaluate_held_out(run, final=True, step=0))
        logger.log(0, before)
    for step in bar:
        metrics = train_step(run, step)
        metrics.update(scheduled_evaluations(run, step))
        logger.log(step, metrics)
        clean = guards.check_step(step, metrics, config.train.on_nonfinite, saved)
        bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items() if k.endswith("reward_mean")})
        every = config.train.save_every
        if clean and (step == config.train.steps or (every and step % every == 0)):
            saved = save(run, step)
    logger.close()
    return {"steps": config.train.steps, "metrics": str(logger.path), "checkpoint": str(saved),
            "is_main_process": accelerator.is_main_process, "skipped_updates": run.skipped_updates}


def scheduled_evaluations(run: Run, step: int) -> dict[str, float]:
    """The held-out evaluations due after ``step``: every ``eval.every`` steps, and the final one."""
    e, metrics = run.config.eval, {}
    if e.every and step % e.every == 0:
        metrics.update(evaluate_held_out(run))
    if step == run.config.train.steps and e.final_n:
        metrics.update(evaluate_held_out(run, final=True, step=step))
    return metrics


def evaluate_held_out(run: Run, *, final: bool = False, step: int = 0) -> dict[str, float]:
    """Held-out pass@k per level (``eval.*``, see :mod:`expo_rl.engine.held_out`) as metrics;
    ``final``: every held-out question with ``eval.final_n`` samples, also written to
    ``eval_final.json`` (``eval_initial.json`` and ``eval_initial/...`` metrics at step 0)."""
    e = run.config.eval
    n, ks, limit = (e.final_n, e.final_k, None) if final else (e.n, e.k, e.limit)
    prompt = prompt_function(run.config, run.tokenizer, run.problem_set.task)
    with policy_for_generation(run.accelerator, run.model) as policy:
        table = held_out.held_out_pass_at_k(policy, run.tokenizer, run.config, run.problem_set, prompt,
                                            n=n, ks=ks, limit=limit, progress=final and run.config.train.progress,
                                            rollout=run.rollout)
    if final and run.accelerator.is_main_process:
        held_out.write_final(run.output_dir, table, step=step, n=n, ks=ks,
                             questions={str(lv): len(ps) for lv, ps in run.problem_set.held_out.items()},
                             name=held_out.INITIAL_FILE if step == 0 else held_out.FINAL_FILE)
    return held_out.as_metrics(("eval_initial" if step == 0 else "eval_final") if final else "eval", table)


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [k for key in sorted(set(old) | set(new))
                for k in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def save(run: Run, step: int) -> Path:
    state = {"step": step, "sources": {t.name: t.source.state_dict() for t in run.terms},
             "config": config_dict(run.config), "finite": guards.parameters_finite(run.model)}
    return checkpoint.save_checkpoint(run.accelerator, run.output_dir / "checkpoints", step,
                                      model=run.model, tokenizer=run.tokenizer, trainer_state=state,
                                      keep_last=run.config.train.keep_last or None)


def train_step(run: Run, step: int) -> dict[str, float]:
    """One training step: sample, score, log-probs, ``mu`` updates; returns its metrics."""
    started = time.perf_counter()
    skipped_before = run.skipped_updates
    verifier_before = verifier_stats.snapshot()
    rows_per_term = collect_rows(run, step)
    samples = step_samples(run)
    sampled = time.perf_counter()
    pad_id = run.tokenizer.pad_token_id
    pad_id = run.tokenizer.eos_token_id if pad_id is None else pad_id
    tagged = tag_rows(rows_per_term)
    micro_batches: list[dict[str, torch.Tensor]] = []
    stats, grad_norm, lr = {}, 0.0, run.optimizer.param_groups[0]["lr"]
    if rows_anywhere(run.accelerator, len(tagged)):
        micro_batches = [pack(rows, pad_id=pad_id, device=run.accelerator.device)
                         for rows in split_micro_batches(tagged, run.config.train.grad_accum)]
        for batch in micro_batches:
            add_fixed_inputs(run, batch)
        stats, grad_norm, lr = update(run, micro_batches, normalisers(run, micro_batches, samples))
    updated = time.perf_counter()

    metrics = mean_over_processes(run.accelerator, {**stats, **entropy_metrics(run, micro_batches),
                                                    **sampler_metrics(micro_batches, run.config.sampling.tis_cap),
                                                    **(run.rollout.stats() if run.rollout else {})})
    metrics.update(row_metrics(run.accelerator, run.terms, rows_per_term))
    metrics.update(mean_over_processes(run.accelerator, source_metrics(run)))
    metrics.update(mean_over_processes(run.accelerator, verifier_metrics(verifier_before)))
    metrics["optim/lr"] = lr  # of the step's last update
    metrics["optim/grad_norm"] = grad_norm  # before clipping, at the last update
    metrics[guards.SKIPPED_KEY] = run.skipped_updates - skipped_before
    metrics["optim/empty_step"] = float(not micro_batches)  # no source had a row: no update
    metrics["time/sample_s"] = sampled - started
    metrics["time/update_s"] = updated - sampled
    metrics["time/step_s"] = time.perf_counter() - started
    if torch.cuda.is_available():  # the trainer's and a colocated vLLM engine's tensors together
        metrics["memory/peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return metrics


def rows_anywhere(accelerator: Any, local_rows: int) -> bool:
    """Whether any process has rows this step (a step where no source yields a row, e.g. no
    usable preference pair, makes no update; under several processes they decide together, so
    the collective backward never waits on a process that skipped)."""
    if accelerator.num_processes == 1:
        return local_rows > 0
    total = accelerator.reduce(torch.tensor([local_rows], device=accelerator.device), "sum")
    return int(total.item()) > 0


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


def step_samples(run: Run) -> list[int | None]:
    """Per term, the samples of its expectation its source reports for this step on this process
    (``source.step_samples()``, e.g. the questions the ExP-SFT term drew), None when it does not
    (the step counts the rows)."""
    return [term.source.step_samples() if hasattr(term.source, "step_samples") else None
            for term in run.terms]


def update(run: Run, micro_batches: list[dict[str, torch.Tensor]], totals: Any
           ) -> tuple[dict[str, float], float, float]:
    """``mu`` optimiser updates, each accumulating over all micro-batches.

    Returns the step's statistics averaged over micro-batches and inner updates, the gradient
    norm before clipping and the learning rate, both at the last update.
    """
    accelerator, cfg = run.accelerator, run.config.train
    stats: dict[str, list[float]] = {}
    grad_norm, lr = 0.0, 0.0
    losses: list[float] = []
    for _inner in range(cfg.mu):
        for batch in micro_batches:
            with accelerator.accumulate(run.model):
                # autocast here, not only through the prepared model's forward: the step runs the
                # bare model's decoder and LM head directly, which that wrapper never sees
                with accelerator.autocast():
                    output = training_step(run.model, batch, run.step_terms, normalisers=totals,
                                           aggregation=cfg.loss_aggregation, temperature=run.temperature)
                # The step normalises over the whole batch already; accelerate (and DeepSpeed)
                # divide by the number of micro-batches again, which this factor undoes.
                accelerator.backward(output.loss * cfg.grad_accum)
                losses.append(float(output.loss.detach()))
                if accelerator.sync_gradients:
                    grad_norm = clip_gradients(run)
                    lr = run.optimizer.param_groups[0]["lr"]
                    if guards.update_is_finite(accelerator, losses, grad_norm):
                        run.optimizer.step()
                        run.scheduler.step()
                    else:  # never applied: the parameters stay finite (expo_rl.engine.guards)
                        run.skipped_updates += 1
                    run.optimizer.zero_grad(set_to_none=True)
                    losses = []
            for key, value in output.stats.items():
                stats.setdefault(key, []).append(float(value))
    return {k: sum(v) / len(v) for k, v in stats.items()}, grad_norm, lr


def add_fixed_inputs(run: Run, batch: dict[str, torch.Tensor]) -> None:
    """What stays fixed during the ``mu`` inner updates, computed without grad before any of
    them: pi_old log-probs (the sampling policy) with its per-token entropy (logged), PPO's old
    values, and pi_ref log-probs, all at the step's temperature (``run.temperature``). With
    ``mu = 1`` and ``train.log_entropy: false`` the step takes pi_old from its own first forward
    pass instead, so only the reference costs a pass here."""
    args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    temperature = run.temperature
    # the frozen copy is not prepared, so it gets the policy's autocast explicitly
    with torch.no_grad(), run.accelerator.autocast():
        if run.needs_reference:
            with run.frozen.reference() as reference:  # LoRA: the policy with adapters disabled
                batch["ref_logprobs"] = completion_logprobs(reference, *args, length_buckets=True, shared_prefix=True,
                                                            temperature=temperature)
        # sampler log-probs (vllm engine) are compared with pi_old before any update
        if run.needs_old or run.config.train.log_entropy or "sampler_logprobs" in batch:
            batch["old_logprobs"], batch["entropy"] = completion_logprobs(
                run.model, *args, return_entropy=True, length_buckets=True, shared_prefix=True,
                temperature=temperature)
            fixed_inputs(run.model, batch, run.step_terms, temperature=temperature)  # PPO's old values
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


def normalisers(run: Run, micro_batches: list[dict[str, torch.Tensor]],
                samples: list[int | None] | None = None) -> Any:
    """Each term's loss denominator over the global batch (all micro-batches, all processes);
    ``samples``: the sample counts the sources reported (:func:`step_samples`)."""
    accelerator = run.accelerator
    return batch_normalisers(micro_batches, run.step_terms, aggregation=run.config.train.loss_aggregation,
                             num_processes=accelerator.num_processes,
                             sum_over_processes=lambda t: accelerator.reduce(t, reduction="sum"),
                             constant_length=float(run.config.sampling.max_new_tokens), samples=samples)


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
