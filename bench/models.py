"""The two benchmark models: random tiny Qwen2 (~1M, ~20M parameters) with a fixed EOS logit bias.

Both sides of the benchmark load the *same saved directory*, so they train the same weights.

Why an EOS bias: a randomly initialised model puts ~1/2048 of its mass on EOS, so it almost never
stops, and the realistic GRPO workload needs completions that end at EOS at varied lengths. A
logits processor cannot be given to both engines the same way (TRL's ``GRPOTrainer`` exposes no
processor hook, and expo-rl's ``sample`` takes none), so the stop rule is part of the *model*: the
LM head is ``logits = h @ E^T + b`` with ``b`` zero except ``b[eos] = eos_logit_bias``. Every code
path of both engines goes through it: Hugging Face ``generate`` and expo-rl's decode loop call
``lm_head``; expo-rl's ``completion_logprobs`` calls ``get_output_embeddings()(h)``; TRL's fused
log-prob head reads ``lm_head.weight`` and ``lm_head.bias``. The bias is a constant buffer (not
trained), so the stop rate does not drift during the run. With near-uniform random logits the
per-token stop probability is ``p = e^b / (e^b + V - 1)``, so completion lengths are geometric with
mean ``1/p`` (capped by ``max_new_tokens``), drawn from the same distribution on both sides.

* ``eos_logit_bias = -30``: never stops (the uniform workload: exactly ``max_new_tokens`` tokens).
* ``eos_logit_bias = 0``: the plain random model (DPO; no sampling).
* ``realistic_eos_bias(mean)``: stops after ``mean`` tokens on average (GRPO realistic).

The weights are ``expo_rl.policy.tiny_model("qwen2", size)`` (same seed), copied into this
class, so the shapes are the library's tiny shapes: 1m = hidden 128 x 4 layers, 20m = hidden 384 x
12 layers, tied embeddings, vocabulary 2048 (the shipped tokenizer).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

MODEL_TYPE = "qwen2_eos_bias"
SIZES = {"1m": 1_000_000, "20m": 20_000_000}
NEVER_STOP_BIAS = -30.0


class EosBiasQwen2Config(Qwen2Config):
    """Qwen2 config plus ``eos_logit_bias`` (added to the EOS logit of every position)."""

    model_type = MODEL_TYPE

    def __init__(self, eos_logit_bias: float = 0.0, **kwargs: Any) -> None:
        self.eos_logit_bias = float(eos_logit_bias)
        super().__init__(**kwargs)
        if not hasattr(self, "auto_map"):  # TRL's create_model_from_path reads it for non-transformers classes
            self.auto_map = {}


class EosBiasedHead(nn.Linear):
    """``h @ W^T + b`` with a constant (buffer, not parameter) bias that is non-zero only at EOS."""

    def __init__(self, hidden: int, vocab: int, eos_id: int, eos_bias: float) -> None:
        super().__init__(hidden, vocab, bias=False)
        self.eos_id, self.eos_bias = eos_id, eos_bias
        del self.bias
        self.register_buffer("bias", torch.zeros(vocab), persistent=False)  # rebuilt from the config on load
        self.reset_bias()

    @torch.no_grad()
    def reset_bias(self) -> None:
        self.bias.zero_()
        self.bias[self.eos_id] = self.eos_bias


class EosBiasQwen2ForCausalLM(Qwen2ForCausalLM):
    config_class = EosBiasQwen2Config

    def __init__(self, config: EosBiasQwen2Config) -> None:
        super().__init__(config)
        eos = config.eos_token_id if isinstance(config.eos_token_id, int) else config.eos_token_id[0]
        self.lm_head = EosBiasedHead(config.hidden_size, config.vocab_size, eos, config.eos_logit_bias)
        self.post_init()  # re-ties lm_head.weight to the input embeddings

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # zeroes every Linear's bias, ours included
        if isinstance(module, EosBiasedHead):
            module.reset_bias()


def register() -> None:
    """Make ``AutoModelForCausalLM.from_pretrained(dir)`` build this class (needed in every process)."""
    try:
        AutoConfig.register(MODEL_TYPE, EosBiasQwen2Config)
        AutoModelForCausalLM.register(EosBiasQwen2Config, EosBiasQwen2ForCausalLM)
    except ValueError:  # already registered in this process
        pass


def realistic_eos_bias(mean_length: float, vocab_size: int = 2048) -> float:
    """The bias ``b`` whose per-token stop probability ``e^b / (e^b + V - 1)`` is ``1/mean_length``."""
    p = 1.0 / mean_length
    return math.log(p * (vocab_size - 1) / (1 - p))


def build_model_dir(root: Path, size: str, eos_logit_bias: float, *, seed: int = 0) -> Path:
    """Save the ``size`` model with this EOS bias (and the tokenizer) under ``root``; reuse if present."""
    from expo_rl.policy import load_tiny_tokenizer, tiny_model

    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; allowed: {', '.join(SIZES)}")
    target = root / f"qwen2-{size}-eos{eos_logit_bias:+.3f}-seed{seed}"
    if (target / "config.json").is_file():
        return target
    register()
    base = tiny_model("qwen2", SIZES[size], seed=seed)
    config = EosBiasQwen2Config(eos_logit_bias=eos_logit_bias, **base.config.to_diff_dict())
    config.architectures = [EosBiasQwen2ForCausalLM.__name__]
    model = EosBiasQwen2ForCausalLM(config)
    missing = model.load_state_dict(base.state_dict(), strict=False)
    if [k for k in missing.missing_keys if k != "lm_head.weight"] or missing.unexpected_keys:
        raise RuntimeError(f"weight copy mismatch: {missing}")
    model.generation_config = base.generation_config
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    load_tiny_tokenizer().save_pretrained(tmp)
    tmp.rename(target)
    return target


def load_model(path: Path | str, dtype: torch.dtype = torch.float32) -> Any:
    register()
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)


def parameter_counts(model: Any) -> dict[str, int]:
    """``total`` (unique parameters), ``embedding`` (V x H, tied with the head), ``body`` (the rest)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    return {"total": total, "embedding": embedding, "body": total - embedding,
            "hidden": model.config.hidden_size, "vocab": model.config.vocab_size,
            "layers": model.config.num_hidden_layers}
