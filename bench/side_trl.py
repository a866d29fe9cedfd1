"""The peer side: TRL's ``GRPOTrainer`` / ``DPOTrainer`` on one benchmark cell (run in its own process).

TRL is configured to do exactly the work expo-rl does (``workloads.HParams``): fp32 (TRL's
``bf16`` default is switched off; ``peer.py --precision bf16`` switches it on, and expo-rl's
``train.mixed_precision: bf16`` with it), no gradient checkpointing (TRL turns it on by default;
expo-rl does not), 1 inner update, the per-sequence-mean GRPO loss (``loss_type="grpo"``), the same
micro-batch size, learning rate, clipping, KL/DPO beta, sampling settings and data order (no
shuffling; the files are pre-shuffled). Everything else is TRL's default, in particular
Hugging Face ``generate`` for sampling and a reference forward every step.

A step's time is the interval between consecutive ``on_step_end`` callbacks, so it includes
data loading and collation, generation, scoring, reference log-probs, forward/backward and the
optimiser step.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import models
import workloads as W
from token_meter import TokenMeter


def _common_args(hp: W.HParams, total_steps: int, out_dir: str, precision: str = "fp32") -> dict[str, Any]:
    return dict(
        output_dir=out_dir, max_steps=total_steps, learning_rate=hp.lr, lr_scheduler_type="constant",
        warmup_steps=0, max_grad_norm=hp.max_grad_norm, adam_beta1=hp.adam_betas[0],
        adam_beta2=hp.adam_betas[1], adam_epsilon=hp.adam_eps, weight_decay=hp.weight_decay, seed=hp.seed,
        use_cpu=True, bf16=precision == "bf16", fp16=False, gradient_checkpointing=False, report_to="none",
        save_strategy="no", logging_steps=10**6, disable_tqdm=True, dataloader_num_workers=0,
    )


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from datasets import Dataset
    from torch.utils.data import SequentialSampler
    from transformers import AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer

    hp = W.HParams(**spec["hparams"])
    workload = W.Workload(**spec["workload"])
    total = spec["warmup"] + spec["steps"]
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = models.load_model(spec["model_dir"])
    step_ends: list[float] = []
    meter = TokenMeter()
    meter.install()
    completion_lengths: list[list[int]] = []

    class StepClock(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step_ends.append(time.perf_counter())
            meter.reset()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step_ends.append(time.perf_counter())
            meter.mark()

    out_dir = tempfile.mkdtemp(prefix="trl-bench-")
    precision = spec.get("precision", "fp32")
    if workload.method == "grpo":
        rows = W.read_jsonl(spec["files"]["problems"])
        prompts = [W.prompt_text(tokenizer, r["problem"], workload.name) for r in rows]

        def reward(prompts: list[Any], completions: list[str], completion_ids: list[list[int]],
                   **kwargs: Any) -> list[float]:
            completion_lengths.append([len(ids) for ids in completion_ids])
            return W.trl_reward(prompts, completions)

        args = GRPOConfig(
            **_common_args(hp, total, out_dir, precision),
            per_device_train_batch_size=hp.micro_batch_rows,
            gradient_accumulation_steps=workload.micro_batches(hp),
            num_generations=workload.group_size, max_completion_length=workload.max_new_tokens,
            temperature=hp.temperature, top_p=hp.top_p, top_k=0, beta=hp.grpo_beta, epsilon=hp.grpo_clip,
            num_iterations=hp.mu, loss_type="grpo", scale_rewards="group", shuffle_dataset=False,
            log_completions=False,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, processing_class=tokenizer,
                              train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                              callbacks=[StepClock()])
    else:
        pairs = W.read_jsonl(spec["files"]["pairs"])
        data = [{"prompt": W.prompt_text(tokenizer, p["question"], workload.name), "chosen": p["chosen"],
                 "rejected": p["rejected"]} for p in pairs]

        class InOrderDPOTrainer(DPOTrainer):
            """DPOTrainer reading the (pre-shuffled) pairs in file order, like the expo-rl side."""

            def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
                return SequentialSampler(self.train_dataset)

        args = DPOConfig(
            **_common_args(hp, total, out_dir, precision),
            per_device_train_batch_size=hp.micro_batch_rows // 2,
            gradient_accumulation_steps=workload.micro_batches(hp),
            beta=hp.dpo_beta, loss_type=["sigmoid"], max_length=None, precompute_ref_log_probs=False,
        )
        trainer = InOrderDPOTrainer(model=model, args=args, processing_class=tokenizer,
                                    train_dataset=Dataset.from_list(data), callbacks=[StepClock()])
    trainer.train()

    step_s = [b - a for a, b in zip(step_ends, step_ends[1:])]
    return {"step_s": step_s, "steps_tokens": _token_stats(spec, workload, tokenizer, trainer,
                                                           completion_lengths, total),
            "computed_tokens": meter.per_step}


def _token_stats(spec: dict[str, Any], workload: W.Workload, tokenizer: Any, trainer: Any,
                 completion_lengths: list[list[int]], total: int) -> list[dict[str, int]]:
    """Per step: prompt and completion tokens of the trained rows, distinct prompt tokens and
    generated tokens (GRPO), from the ids TRL itself produced."""
    stats = []
    if workload.method == "grpo":
        rows = W.read_jsonl(spec["files"]["problems"])
        q = workload.questions_per_step
        for step in range(total):
            prompt_lens = [len(tokenizer(text=W.prompt_text(tokenizer, r["problem"], workload.name))["input_ids"])
                           for r in rows[step * q:(step + 1) * q]]
            completions = completion_lengths[step]
            stats.append({"prompt_tokens": sum(prompt_lens) * workload.group_size,
                          "completion_tokens": sum(completions), "distinct_prompt_tokens": sum(prompt_lens),
                          "generated_tokens": sum(completions), "rows": len(completions),
                          "max_completion": max(completions)})
        return stats
    dataset = trainer.train_dataset
    n = workload.pairs_per_step
    for step in range(total):
        part = dataset[step * n:(step + 1) * n]
        prompt = sum(len(p) for p in part["prompt_ids"])
        completion = sum(len(c) for c in part["chosen_ids"]) + sum(len(r) for r in part["rejected_ids"])
        stats.append({"prompt_tokens": 2 * prompt, "completion_tokens": completion,
                      "distinct_prompt_tokens": prompt, "generated_tokens": 0, "rows": 2 * n})
    return stats

