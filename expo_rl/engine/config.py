"""The training configuration: YAML preset + ``--set key=value`` overrides -> :class:`RunConfig`.

A method is a list of loss terms; each term names a data source, a reward function and a
gradient coefficient (SPEC section 2), plus a weight. Everything else (model, data, sampling,
optimiser, runtime) is shared. Registry names are checked against the registries, and each
term's ``source_args`` / ``coefficient_args`` against the chosen entry's options, so a bad preset
fails at load time with the key and the allowed values in the message.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from expo_rl.engine.typed_config import (
    ConfigError,
    apply_override,
    from_dict,
    load_yaml,
    parse_override,
    to_dict,
)

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def _sources() -> list[str]:
    from expo_rl.sources import SOURCES

    return list(SOURCES)


def _coefficients() -> list[str]:
    from expo_rl.core.coefficients import COEFFICIENTS

    return list(COEFFICIENTS)


def _rewards() -> list[str]:
    from expo_rl.engine.recipe import reward_names

    return reward_names()


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text, **kw.pop("metadata", {})}, **kw)


@dataclass
class LoraOptions:
    r: int = _help("LoRA rank (0: full fine-tuning). With LoRA the reference policy is the base model "
                   "with the adapter disabled and only adapter parameters are trained", default=0)
    alpha: float = _help("LoRA scale numerator: the update is (alpha / r) B A", default=16.0)
    dropout: float = _help("dropout on the LoRA input (keep 0 for RL: ratios must start at 1)", default=0.0)
    target_modules: list[str] | str = _help("module-name suffixes to adapt, or 'all-linear'",
                                            default="all-linear")
    load_in_4bit: bool = _help("QLoRA: 4-bit NF4 base weights (CUDA GPU + bitsandbytes only)", default=False)


@dataclass
class ModelConfig:
    policy: str = _help("load_policy spec: tiny:qwen2, gemma3-270m, a local dir, a .gguf or a hub id",
                        default="tiny:qwen2")
    dtype: Literal["float32", "bfloat16", "float16"] = _help(
        "parameter dtype of the loaded policy (keep float32 and use train.mixed_precision=bf16 on GPUs)",
        default="float32")
    gradient_checkpointing: bool = _help("recompute activations in backward to save memory", default=False)
    lora: LoraOptions = field(default_factory=LoraOptions)


@dataclass
class DataConfig:
    name: str = _help("load_problems name: math_train, math500, gsm8k_train, gsm8k_test, a .jsonl path, hf:<id>[:split]",
                      default="math_train")
    split: str | None = _help("split for data sets that have several", default=None)
    data_dir: str | None = _help("directory holding math/ and gsm8k/ (default: the shared data)", default=None)
    levels: list[int] | None = _help("keep only these MATH levels (problems without a level are dropped)", default=None)
    limit: int | None = _help("use at most this many questions (after the level filter)", default=None)
    instruction: str | None = _help("prompt instruction after the question (default: the policy layer's)", default=None)


@dataclass
class SamplingConfig:
    temperature: float = _help("sampling temperature for every source that samples", default=0.9)
    top_p: float = _help("nucleus sampling threshold", default=1.0)
    max_new_tokens: int = _help("generation length cap (tokens)", default=256)
    batch_size: int | None = _help("sequences per generation forward pass (default: all at once)", default=None)
    draw: Literal["multinomial", "inverse_cdf"] = _help(
        "how tokens are drawn: torch.multinomial, or inverse CDF (same distribution, ~5x cheaper per "
        "step with a 262k vocabulary on CPU; another random stream)", default="multinomial")
    engine: Literal["hf", "vllm"] = _help(
        "rollout engine of on-policy sampling: hf (the built-in decode loop) or vllm (colocated, "
        "in-process; weights synced after every optimiser step; pip install expo-rl[vllm])", default="hf")
    tis_cap: float | None = _help(
        "truncated importance sampling: multiply each token's gradient coefficient by "
        "min(pi_trainer / pi_sampler, tis_cap) (null: off; vllm engine only)", default=None)
    vllm_kv_cache_gb: float = _help("vllm engine: KV-cache size on CPU (GiB); on GPU see gpu_memory_utilization",
                                    default=1.0)
    vllm_gpu_memory_utilization: float = _help("vllm engine on GPU: share of GPU memory it may take", default=0.3)
    vllm_dtype: Literal["auto", "float32", "bfloat16", "float16"] = _help(
        "vllm engine weights: auto = bfloat16 on GPU under train.mixed_precision auto/bf16, else the "
        "policy's dtype", default="auto")
    vllm_sleep: bool = _help("vllm engine on GPU: free its weights and KV cache between rollouts (LLM.sleep)",
                             default=False)


@dataclass
class TermConfig:
    source: str = _help("data source (registry name)", metadata={"choices": _sources})
    coefficient: str = _help("gradient coefficient (registry name)", metadata={"choices": _coefficients})
    name: str | None = _help("label in metrics and cache files (default: the coefficient name)", default=None)
    reward: str | None = _help("reward for rows the source did not score: a registry name or 'module:function'",
                               default="correctness")
    weight: float = _help("multiplier of this term's loss", default=1.0)
    source_args: dict[str, Any] = _help("options of the data source", default_factory=dict)
    coefficient_args: dict[str, Any] = _help("hyper-parameters of the gradient coefficient", default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.coefficient


@dataclass
class OptimConfig:
    lr: float = _help("peak learning rate (AdamW)", default=1e-6)
    weight_decay: float = _help("AdamW weight decay (not on biases and norms)", default=0.0)
    betas: tuple[float, float] = _help("AdamW betas", default=(0.9, 0.999))
    eps: float = _help("AdamW epsilon", default=1e-8)
    schedule: Literal["cosine", "constant"] = _help("learning-rate schedule after warm-up", default="cosine")
    warmup_ratio: float = _help("share of all optimiser updates spent warming up linearly", default=0.0)
    min_lr_ratio: float = _help("cosine floor as a share of the peak", default=0.0)
    max_grad_norm: float | None = _help("clip the global gradient norm to this (null: no clipping)", default=1.0)


@dataclass
class TrainConfig:
    steps: int = _help("training steps; each draws one batch from every term's source", default=10)
    mu: int = _help("optimiser updates per drawn batch (PPO/GRPO inner epochs; pi_old = the sampler)", default=1)
    grad_accum: int = _help("micro-batches per optimiser update (a process's rows are split into this many)", default=1)
    loss_aggregation: str = _help("how token terms are averaged: seq_mean (paper), token_mean (DAPO), constant (Dr. GRPO)",
                                  default="seq_mean")
    seed: int = _help("seed of data shuffling and sampling (a tiny model's init seed is in its spec: "
                      "tiny:qwen2:seed=1)", default=0)
    mixed_precision: Literal["auto", "no", "bf16"] = _help("bf16 autocast: auto = bf16 on GPU, off on CPU", default="auto")
    output_dir: str = _help("where metrics, checkpoints and caches go", default="runs/default")
    save_every: int = _help("checkpoint every N steps (0: only at the end)", default=0)
    keep_last: int = _help("keep the newest N complete checkpoints (0: keep all)", default=2)
    tensorboard: bool = _help("also write TensorBoard scalars to <output_dir>/tensorboard", default=True)
    log_entropy: bool = _help("log the sampling policy's per-token entropy (one extra no-grad forward "
                              "pass per step when mu = 1)", default=True)
    progress: bool = _help("show progress bars", default=True)


@dataclass
class RunConfig:
    method: str = _help("free-text label of the method (sft, grpo, exp_grpo, ...)", default="")
    terms: list[TermConfig] = _help("loss terms: source x reward x coefficient x weight", default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def preset_names() -> list[str]:
    """Names of the shipped presets (``expo_rl/presets/*.yaml`` without the suffix)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_preset(name_or_path: str) -> Path:
    """A YAML path, or a shipped preset's name (``grpo``, ``gpu/grpo``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    shipped = PRESET_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = preset_names() + [f"gpu/{n}" for n in sorted(p.stem for p in (PRESET_DIR / "gpu").glob("*.yaml"))]
    raise ConfigError(f"no config file or preset named {name_or_path!r}; presets: {', '.join(names)}")


def load_config(name_or_path: str, overrides: list[str] = ()) -> RunConfig:
    """Read a preset/YAML file, apply ``key=value`` overrides, validate (see :func:`validate`)."""
    data = load_yaml(str(resolve_preset(name_or_path)))
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value)
    return validate(from_dict(RunConfig, data))


def validate(config: RunConfig) -> RunConfig:
    """Cross-field checks and each term's registry options; returns ``config`` unchanged."""
    from expo_rl.core.aggregation import LOSS_AGGREGATIONS
    from expo_rl.core.coefficients import get_coefficient
    from expo_rl.sources import get_source

    if not config.terms:
        raise ConfigError("config key 'terms' is required: at least one loss term (source + coefficient)")
    if config.train.loss_aggregation not in LOSS_AGGREGATIONS:
        raise ConfigError(f"config key 'train.loss_aggregation': {config.train.loss_aggregation!r} is not "
                          f"allowed; allowed values: {', '.join(LOSS_AGGREGATIONS)}")
    for key in ("steps", "mu", "grad_accum"):
        if getattr(config.train, key) < 1:
            raise ConfigError(f"config key 'train.{key}': must be >= 1")
    labels = [t.label for t in config.terms]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"config key 'terms': term names must differ (got {labels}); set terms.N.name")
    for i, term in enumerate(config.terms):
        from_dict(get_source(term.source).options, term.source_args, f"terms.{i}.source_args")
        check_kwargs(get_coefficient(term.coefficient), term.coefficient_args,
                     f"terms.{i}.coefficient_args")
        if term.reward is not None and ":" not in term.reward and term.reward not in _rewards():
            raise ConfigError(f"config key 'terms.{i}.reward': {term.reward!r} is not allowed; allowed "
                              f"values: {', '.join(_rewards())}, null, or 'module:function'")
    return config


def resume_warnings(config: RunConfig) -> list[str]:
    """Why a resumed run of ``config`` could differ from an uninterrupted one (empty: it will not).

    Online sources (``source_args.refresh_every: N > 0``: online ExP-DPO, refreshed ExP-GRPO)
    keep the current generation's explanations, own samples and refreshed reference in memory;
    a resume regenerates them from the resumed policy at the next step. That step starts a new
    generation exactly when checkpoints fall on generation boundaries (``train.save_every`` a
    multiple of N), and then the resumed run equals the uninterrupted one.
    """
    notes = []
    for i, term in enumerate(config.terms):
        every = term.source_args.get("refresh_every", 0)
        if isinstance(every, int) and every > 0 and config.train.save_every % every:
            notes.append(f"config key 'train.save_every' ({config.train.save_every}) is not a multiple of "
                         f"'terms.{i}.source_args.refresh_every' ({every}): a resumed run regenerates term "
                         f"{term.label!r}'s online data from the resumed policy mid-generation, so it will "
                         f"differ from an uninterrupted run")
    return notes


def check_kwargs(fn: Any, kwargs: dict[str, Any], path: str) -> None:
    """Keyword arguments must be keyword-only parameters of ``fn`` with a matching value type."""
    params = {name: p for name, p in inspect.signature(fn).parameters.items()
              if p.kind is inspect.Parameter.KEYWORD_ONLY}
    for key, value in kwargs.items():
        if key not in params:
            raise ConfigError(f"unknown key '{path}.{key}'; valid keys under '{path}': "
                              f"{', '.join(params) or '(none)'}")
        default = params[key].default
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"config key '{path}.{key}': expected a number, got "
                                  f"{type(value).__name__} ({value!r})")
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"config key '{path}.{key}': expected bool, got {type(value).__name__} ({value!r})")


def config_dict(config: RunConfig) -> dict[str, Any]:
    return to_dict(config)
