"""Tiny random causal LMs built from a config, for tests and benchmarks (no weights needed).

Spec grammar: ``tiny:<arch>[:<size>][:seed=<int>]`` where ``arch`` is one of ``qwen2``, ``llama``,
``gemma3`` and ``size`` is a parameter budget such as ``500k``, ``1m`` (default) or ``20m``.
The architecture shape (hidden size, layers, heads) is the smallest grid point whose parameter
count is closest to the budget. Weights are drawn from the model's own initialiser under
``torch.manual_seed(seed)`` inside a forked RNG, so the same spec gives the same model and does not
disturb the caller's random state.

All three use the shipped byte-level BPE tokenizer ``expo_rl/assets/tiny_tokenizer`` (2048 tokens,
ChatML template, eos ``<|im_end|>`` = 2, pad ``<|endoftext|>`` = 0). ``qwen2`` and ``gemma3`` tie
the LM head to the input embeddings (as the real models do); ``llama`` keeps them untied, so tests
cover both cases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from expo_rl.errors import ModelSpecError

TINY_TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny_tokenizer"
TINY_VOCAB_SIZE = 2048
TINY_ARCHS = ("qwen2", "llama", "gemma3")
DEFAULT_TINY_SIZE = "1m"
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([km])$")


@dataclass(frozen=True)
class TinySpec:
    """A parsed ``tiny:*`` spec: architecture, parameter budget and init seed."""

    arch: str
    n_params: int
    seed: int = 0


def parse_tiny_spec(spec: str) -> TinySpec:
    """``'tiny:qwen2:20m:seed=3'`` -> ``TinySpec('qwen2', 20_000_000, 3)``; clear error otherwise."""
    parts = spec.split(":")
    if parts[0] != "tiny" or len(parts) < 2:
        raise ModelSpecError(f"not a tiny spec: {spec!r} (expected 'tiny:<arch>[:<size>][:seed=<int>]')")
    arch = parts[1].lower()
    if arch not in TINY_ARCHS:
        raise ModelSpecError(f"unknown tiny architecture {parts[1]!r} in {spec!r}; allowed: {', '.join(TINY_ARCHS)}")
    n_params, seed = parse_size(DEFAULT_TINY_SIZE), 0
    for part in parts[2:]:
        if part.startswith("seed="):
            try:
                seed = int(part[len("seed="):])
            except ValueError:
                raise ModelSpecError(f"bad seed {part!r} in {spec!r}: expected seed=<int>") from None
        else:
            n_params = parse_size(part, spec=spec)
    return TinySpec(arch, n_params, seed)


def parse_size(text: str, *, spec: str | None = None) -> int:
    """``'500k'`` -> 500_000, ``'20m'`` -> 20_000_000."""
    match = _SIZE_RE.match(text.strip().lower())
    if not match:
        where = f" in {spec!r}" if spec else ""
        raise ModelSpecError(f"bad tiny model size {text!r}{where}: expected e.g. '500k', '1m', '20m'")
    return int(float(match.group(1)) * {"k": 1_000, "m": 1_000_000}[match.group(2)])


def load_tiny_tokenizer() -> Any:
    """The shipped 2048-token tokenizer (eos id 2, pad id 0, ChatML chat template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TINY_TOKENIZER_DIR))


def _shape_params(arch: str, hidden: int, layers: int, vocab: int) -> int:
    """Approximate parameter count of the grid point (attention + gated MLP + embeddings)."""
    head_dim = 32
    heads = hidden // head_dim
    kv = max(1, heads // 2)
    attn = hidden * heads * head_dim * 2 + hidden * kv * head_dim * 2
    mlp = 3 * hidden * _intermediate(hidden)
    embeddings = vocab * hidden * (1 if arch in ("qwen2", "gemma3") else 2)
    return layers * (attn + mlp) + embeddings


def _intermediate(hidden: int) -> int:
    return 2 * hidden if hidden <= 128 else (8 * hidden) // 3 // 32 * 32


def _pick_shape(arch: str, n_params: int, vocab: int) -> tuple[int, int]:
    """(hidden, layers) on a grid of widths (multiples of 64, head dim 32) and depths, closest to the budget."""
    best: tuple[float, int, int] | None = None
    for hidden in range(64, 2048 + 1, 64):  # even head counts, so GQA groups divide
        for layers in range(2, 33):
            if layers > max(2, hidden // 32):  # keep shapes sensible: no 30-layer 64-wide towers
                continue
            err = abs(_shape_params(arch, hidden, layers, vocab) - n_params) / n_params
            if best is None or err < best[0] - 1e-9:
                best = (err, hidden, layers)
    assert best is not None
    return best[1], best[2]


def tiny_config(arch: str, n_params: int = 1_000_000, *, vocab_size: int = TINY_VOCAB_SIZE,
                **overrides: Any) -> Any:
    """A ``transformers`` config for a random model of about ``n_params`` parameters.

    ``overrides`` set config fields directly (e.g. ``final_logit_softcapping=30.0`` for Gemma,
    ``tie_word_embeddings=False``), so tests can exercise the options real checkpoints use.
    """
    from transformers import Gemma3TextConfig, LlamaConfig, Qwen2Config

    if arch not in TINY_ARCHS:
        raise ModelSpecError(f"unknown tiny architecture {arch!r}; allowed: {', '.join(TINY_ARCHS)}")
    hidden, layers = _pick_shape(arch, n_params, vocab_size)
    heads = hidden // 32
    common: dict[str, Any] = dict(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=_intermediate(hidden),
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
        head_dim=32, max_position_embeddings=4096, eos_token_id=2, pad_token_id=0, bos_token_id=None,
    )
    if arch == "qwen2":
        config = Qwen2Config(**common, tie_word_embeddings=True)
    elif arch == "llama":
        config = LlamaConfig(**common, tie_word_embeddings=False)
    else:
        config = Gemma3TextConfig(**common, tie_word_embeddings=True, sliding_window=256,
                                  query_pre_attn_scalar=32)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def tiny_model(arch: str, n_params: int = 1_000_000, *, seed: int = 0, dtype: torch.dtype = torch.float32,
               **overrides: Any) -> Any:
    """A random causal LM (eval mode) with eos/pad ids set in its config and generation config."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    config = tiny_config(arch, n_params, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig(eos_token_id=2, pad_token_id=0, bos_token_id=None)
    return model.eval()


def load_tiny(spec: str, *, dtype: torch.dtype = torch.float32, **overrides: Any) -> tuple[Any, Any]:
    """``load_tiny('tiny:qwen2:20m')`` -> (model, tokenizer)."""
    parsed = parse_tiny_spec(spec)
    model = tiny_model(parsed.arch, parsed.n_params, seed=parsed.seed, dtype=dtype, **overrides)
    return model, load_tiny_tokenizer()
