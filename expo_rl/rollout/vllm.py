"""The ``vllm`` rollout engine: vLLM colocated with the trainer, in the same process.

Set-up: the policy's current weights (LoRA merged) are written once to a temporary Hugging Face
directory with the model's config, and ``vllm.LLM`` loads it (``enforce_eager``: no CUDA graphs
to recapture when weights change; ``skip_tokenizer_init``: prompts go in as token ids made by
``expo_rl.policy.encode_prompt``, so both engines see exactly the same prompt tokens, and
completions are decoded with the run's tokenizer).

Before every ``sample`` call the engine asks its :class:`~expo_rl.rollout.sync.WeightTracker`
for the parameters the trainer has written since the last call (after each optimiser step that
precedes a rollout; nothing when the weights did not change) and loads only those into vLLM's
model with ``model.load_weights`` (which maps Hugging Face names onto vLLM's fused layers, e.g.
q/k/v -> qkv_proj), then clears vLLM's prefix cache (its KV blocks were computed with the old
weights).

Log-probs: each completion token's log-probability under vLLM's own forward pass, before
temperature and top-p (``logprobs_mode="raw_logprobs"``), i.e. the same quantity the trainer's
``completion_logprobs`` computes; the runtime compares the two every step.

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


class VLLMEngine:
    """Samples with an in-process ``vllm.LLM`` that follows the trainer's weights (module doc)."""

    name = "vllm"

    def __init__(self, model: Any, tokenizer: Any, settings: SamplingSettings, *, kv_cache_gb: float = 1.0,
                 gpu_memory_utilization: float = 0.3, max_model_len: int | None = None, sleep: bool = False,
                 seed: int = 0) -> None:
        on_gpu = torch.cuda.is_available()
        if not on_gpu:
            # the CPU backend sizes its KV cache from this variable (GiB), read at engine start
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gb))))
        from vllm import LLM

        self.tokenizer, self.settings = tokenizer, settings
        self.eos_ids = eos_token_ids(model, tokenizer)
        inner = unwrap(model)
        dtype = next(inner.parameters()).dtype
        config = (inner.get_base_model() if is_lora(inner) else inner).config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        limit = getattr(text_config, "max_position_embeddings", None) or 4096
        self._dir = tempfile.mkdtemp(prefix="expo-rl-vllm-")
        started = time.perf_counter()
        write_snapshot(model, tokenizer, self._dir)
        kwargs: dict[str, Any] = dict(model=self._dir, dtype=_DTYPES.get(dtype, "auto"), seed=seed,
                                      enforce_eager=True, skip_tokenizer_init=True,
                                      max_model_len=max_model_len or min(int(limit), 8192),
                                      logprobs_mode="raw_logprobs")
        if on_gpu:
            kwargs.update(gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=sleep)
        self.llm = LLM(**kwargs)
        self.sleep = sleep and on_gpu
        if self.sleep:
            self.llm.sleep(level=1)
        self.load_s = time.perf_counter() - started
        self.tracker = WeightTracker(model)
        self._stats: dict[str, float] = {}

    # -- weights ---------------------------------------------------------------------------------
    def _model(self) -> Any:
        """vLLM's own ``nn.Module`` (in-process engine core, one worker)."""
        core = self.llm.llm_engine.engine_core
        core = getattr(core, "engine_core", core)  # InprocClient -> EngineCore
        return core.model_executor.driver_worker.worker.model_runner.model

    def sync(self, model: Any) -> int:
        """Load the parameters changed since the last sync into vLLM; returns how many tensors."""
        started = time.perf_counter()
        changed = list(self.tracker.changed(model))
        if changed:
            target = self._model()
            device = next(target.parameters()).device
            target.load_weights((name, tensor.to(device)) for name, tensor in changed)
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
        params = [SamplingParams(n=n, temperature=s.temperature, top_p=s.top_p, top_k=0, min_p=0.0,
                                 max_tokens=s.max_new_tokens, stop_token_ids=self.eos_ids, ignore_eos=False,
                                 logprobs=0, detokenize=False,
                                 seed=None if seed is None else seed + i)
                  for i in range(len(prompts))]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids], params,
                                    use_tqdm=False)
        batch = SampleBatch(logprobs=[])
        for i, output in enumerate(outputs):
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
