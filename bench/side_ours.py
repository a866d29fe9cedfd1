"""Our side: expo-rl's own training runtime on one benchmark cell (run in its own process).

This is what ``expo-rl train CONFIG`` runs, not a private fast path: the config below goes
through ``expo_rl.engine.config`` validation, ``runtime.setup`` builds the model, the frozen
reference, the data source (``on_policy`` for GRPO: sampling with ``expo_rl.policy.sample``;
``preference_pairs`` from a file for DPO) and the optimiser, and every step is
``runtime.train_step``: sample -> score -> micro-batches (``engine.batching``) -> reference
log-probs (``completion_logprobs``) -> the shared step (``engine.step.training_step`` with the
``grpo`` / ``dpo`` gradient coefficient) -> AdamW. The only wrapper records the token counts of
the rows each step trained on (it does not change them).

Settings that differ from the config defaults, and why: ``train.log_entropy: false`` (the
entropy metric costs the runtime one extra no-grad forward pass per step; TRL gets it for free
inside its fused log-prob head, so keeping it would time a logging feature, see the README),
``tensorboard: false``, ``progress: false``, ``mixed_precision: "no"`` (fp32, as TRL; ``bf16``
with ``peer.py --precision bf16``, when TRL runs with ``bf16=True``).

``variant="unbucketed"`` is an ablation: the runtime without its two length-bucketing levels
(length-sorted micro-batches, ``engine.batching``; length sub-batches inside each forward,
``policy.logprobs.length_sub_batches``), i.e. every micro-batch padded to its longest row.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import models
import workloads as W
from token_meter import TokenMeter


def run_config(spec: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """The expo-rl run config (a plain dict, as a YAML preset would hold) for this cell."""
    hp = W.HParams(**spec["hparams"])
    workload = W.Workload(**spec["workload"])
    total = spec["warmup"] + spec["steps"]
    if workload.method == "grpo":
        term = {"source": "on_policy", "coefficient": "grpo", "reward": "workloads:reward",
                "source_args": {"questions_per_step": workload.questions_per_step,
                                "group_size": workload.group_size, "shuffle": False},
                "coefficient_args": {"clip_eps": hp.grpo_clip, "beta": hp.grpo_beta}}
    else:
        term = {"source": "preference_pairs", "coefficient": "dpo", "reward": None,
                "source_args": {"pairs_per_step": workload.pairs_per_step, "path": spec["files"]["pairs"],
                                "shuffle": False},
                "coefficient_args": {"beta": hp.dpo_beta, "length_normalized": False}}
    return {
        "method": workload.method,
        "terms": [term],
        "model": {"policy": spec["model_dir"], "dtype": "float32", "gradient_checkpointing": False},
        "data": {"name": spec["files"]["problems"], "instruction": "" if workload.name == "uniform" else None},
        "sampling": {"temperature": hp.temperature, "top_p": hp.top_p, "max_new_tokens": workload.max_new_tokens,
                     "batch_size": None},
        "optim": {"lr": hp.lr, "weight_decay": hp.weight_decay, "betas": list(hp.adam_betas), "eps": hp.adam_eps,
                  "schedule": "constant", "warmup_ratio": 0.0, "max_grad_norm": hp.max_grad_norm},
        "train": {"steps": total, "mu": hp.mu, "grad_accum": workload.micro_batches(hp),
                  "loss_aggregation": "seq_mean", "seed": hp.seed,
                  "mixed_precision": "bf16" if spec.get("precision") == "bf16" else "no",
                  "output_dir": out_dir, "save_every": 0, "tensorboard": False, "log_entropy": False,
                  "progress": False},
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from expo_rl.engine import runtime
    from expo_rl.engine.config import RunConfig, validate
    from expo_rl.engine.typed_config import from_dict

    models.register()
    workload = W.Workload(**spec["workload"])
    total = spec["warmup"] + spec["steps"]
    config = validate(from_dict(RunConfig, run_config(spec, tempfile.mkdtemp(prefix="ours-bench-"))))
    if spec.get("variant", "shipped") == "unbucketed":
        import functools

        from expo_rl.policy import logprobs

        runtime.split_micro_batches = functools.partial(runtime.split_micro_batches, by_length=False)
        logprobs.BUCKET_MAX_ROWS = 0  # length_sub_batches then always answers "one piece"

    token_stats: list[dict[str, int]] = []
    collect_rows = runtime.collect_rows

    def recording_collect_rows(run_: Any, step: int) -> Any:
        rows_per_term = collect_rows(run_, step)
        token_stats.append(_token_stats(workload, [r for rows in rows_per_term for r in rows]))
        return rows_per_term

    runtime.collect_rows = recording_collect_rows  # train_step looks it up in the module at call time

    meter = TokenMeter()
    meter.install()
    accelerator = runtime.make_accelerator(config)
    run_state = runtime.setup(config, accelerator)
    _check_prompts(run_state, spec, workload)
    step_s, phases = [], []
    meter.reset()
    for step in range(1, total + 1):
        started = time.perf_counter()
        metrics = runtime.train_step(run_state, step)
        step_s.append(time.perf_counter() - started)
        meter.mark()
        phases.append({"sample_s": metrics["time/sample_s"], "update_s": metrics["time/update_s"]})
    return {"step_s": step_s, "steps_tokens": token_stats, "phases": phases, "computed_tokens": meter.per_step}


def _token_stats(workload: W.Workload, rows: list[Any]) -> dict[str, int]:
    prompt = sum(len(r.prompt_ids) for r in rows)
    completion = sum(len(r.completion_ids) for r in rows)
    if workload.method == "grpo":
        distinct = prompt // workload.group_size
        return {"prompt_tokens": prompt, "completion_tokens": completion, "distinct_prompt_tokens": distinct,
                "generated_tokens": completion, "rows": len(rows),
                "max_completion": max(len(r.completion_ids) for r in rows)}
    return {"prompt_tokens": prompt, "completion_tokens": completion, "distinct_prompt_tokens": prompt // 2,
            "generated_tokens": 0, "rows": len(rows)}


def _check_prompts(run_state: Any, spec: dict[str, Any], workload: W.Workload) -> None:
    """The runtime must build the same prompt strings the TRL side is given."""
    from expo_rl.data import Problem

    first = W.read_jsonl(spec["files"]["problems"])[0]["problem"]
    ours = run_state.terms[0].env.prompt(Problem(id="prompt-check", question=first, answer=""))
    expected = W.prompt_text(run_state.tokenizer, first, workload.name)
    if ours != expected:
        raise RuntimeError(f"prompt mismatch between the sides:\nours: {ours!r}\nTRL:  {expected!r}")
