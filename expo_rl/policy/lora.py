"""LoRA / QLoRA adapters through ``peft`` (issue 12; LoRA: Hu et al. 2021, QLoRA: Dettmers et al. 2023).

A LoRA layer replaces ``W x`` by ``W x + (alpha / r) B A x`` with ``A`` [r, in] and ``B`` [out, r]
trainable and ``W`` frozen (``B = 0`` at the start, so the adapted model starts as the base).
Three consequences the runtime relies on:

* the reference policy ``pi_ref`` is the base model, i.e. the same module with its adapters
  disabled (:func:`adapter_disabled`): no second frozen copy is kept in memory;
* only the adapter parameters require gradients, so the optimiser holds only them;
* a rollout engine that holds plain weights gets the merged ``W + (alpha / r) B A``
  (:func:`merged_named_weights`), under the base model's own (Hugging Face) parameter names.

QLoRA (``load_in_4bit``): the base weights are loaded in 4-bit NF4 through ``bitsandbytes``,
which needs a CUDA GPU; see :func:`load_4bit_base`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from expo_rl.policy.logprobs import unwrap

ADAPTER_CONFIG = "adapter_config.json"
_PEFT_PREFIX = "base_model.model."


def is_lora(model: nn.Module) -> bool:
    """True when ``model`` (or the model inside a DDP-style wrapper) is a peft model."""
    return hasattr(unwrap(model), "peft_config")


def add_lora(model: nn.Module, *, r: int, alpha: float, dropout: float = 0.0,
             target_modules: str | Sequence[str] = "all-linear") -> nn.Module:
    """``model`` with LoRA adapters of rank ``r`` on ``target_modules`` (peft names: a list of
    module-name suffixes such as ``[q_proj, v_proj]``, or ``"all-linear"``: every linear layer but
    the output head). Only the adapter parameters require gradients afterwards."""
    from peft import LoraConfig, get_peft_model

    if r < 1:
        raise ValueError(f"add_lora: r must be >= 1, got {r}")
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


@contextmanager
def adapter_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """The base model: ``model`` (unwrapped) with every adapter switched off for the duration."""
    inner = unwrap(model)
    with inner.disable_adapter():
        yield inner


def base_parameter_name(name: str) -> str:
    """A peft parameter name as the base model names it:
    ``base_model.model.model.layers.0.q_proj.base_layer.weight`` -> ``model.layers.0.q_proj.weight``."""
    if name.startswith(_PEFT_PREFIX):
        name = name[len(_PEFT_PREFIX):]
    return name.replace(".base_layer.", ".")


def merged_named_weights(model: nn.Module, only: set[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(Hugging Face name, tensor) of every base weight, with each LoRA layer's weight merged:
    ``W + get_delta_weight()`` (= ``W + (alpha / r) B A``, transposed for fan-in-fan-out layers).
    Adapter tensors themselves are not yielded. ``only``: yield just these (merged) names."""
    from peft.tuners.lora import LoraLayer

    inner = unwrap(model)
    merged: dict[str, torch.Tensor] = {}
    for module_name, module in inner.named_modules():
        if isinstance(module, LoraLayer) and not module.merged:
            name = base_parameter_name(f"{module_name}.base_layer.weight")
            if only is not None and name not in only:
                continue
            weight = module.get_base_layer().weight.detach()
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    weight = weight + module.get_delta_weight(adapter).to(weight.dtype)
            merged[name] = weight
    for name, tensor in inner.named_parameters():
        if ".lora_" in name:
            continue
        name = base_parameter_name(name)
        if only is None or name in only:
            yield name, merged.pop(name, tensor.detach())


def adapter_groups(model: nn.Module) -> dict[str, list[str]]:
    """Merged base-weight name -> the names of the adapter parameters it depends on (to send
    only the merged weights whose adapter changed)."""
    inner = unwrap(model)
    groups: dict[str, list[str]] = {}
    for name, _ in inner.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            layer = name.split(".lora_")[0]
            groups.setdefault(base_parameter_name(f"{layer}.base_layer.weight"), []).append(name)
    return groups


def load_4bit_base(spec: str, *, compute_dtype: torch.dtype = torch.bfloat16) -> Any:
    """A Hugging Face model (local dir or hub id) with 4-bit NF4 base weights, ready for LoRA
    training (QLoRA). Needs a CUDA GPU and ``bitsandbytes``."""
    if not torch.cuda.is_available():
        raise RuntimeError("model.lora.load_in_4bit needs a CUDA GPU (bitsandbytes 4-bit kernels); "
                           "set model.lora.load_in_4bit=false on CPU")
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=compute_dtype)
    model = AutoModelForCausalLM.from_pretrained(spec, quantization_config=quant, dtype=compute_dtype,
                                                 device_map={"": torch.cuda.current_device()})
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def merge_adapter_dir(base: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """``base`` with the adapter saved in ``adapter_dir`` merged in: a plain model (no peft)."""
    from peft import PeftModel

    if not (Path(adapter_dir) / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(f"{adapter_dir} holds no {ADAPTER_CONFIG}: not a LoRA adapter")
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()


__all__ = ["ADAPTER_CONFIG", "adapter_disabled", "adapter_groups", "add_lora", "base_parameter_name",
           "is_lora", "load_4bit_base", "merge_adapter_dir", "merged_named_weights"]
