"""The training configuration: YAML preset + ``--set key=value`` overrides -> :class:`RunConfig`.

A method is a list of loss terms; each term names a data source, a reward function and a
gradient coefficient (SPEC section 2), plus a weight. Everything else (model, data, sampling,
optimiser, runtime) is shared. Registry names are checked against the registries, and each
term's ``source_args`` / ``coefficient_args`` against the chosen entry's options, so a bad preset
fails at load time with the key and the allowed values in the message.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
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
from expo_rl.verify import REWARDS

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


# The source and coefficient registries import torch (seconds): they are imported on first use,
# so `expo-rl --help` and reading a config stay fast. The reward registry is light.
def _sources() -> list[str]:
    from expo_rl.sources import SOURCES

    return list(SOURCES)


def _coefficients() -> list[str]:
    from expo_rl.core.coefficients import COEFFICIENTS

    return list(COEFFICIENTS)


TASK_REWARD = "task"  # terms.N.reward of a task run: the task's own verifier


def reward_names() -> list[str]:
    """Names accepted by ``terms.N.reward`` besides 'module:function'."""
    return sorted([*REWARDS, TASK_REWARD])


def _report_targets() -> list[str]:
    from expo_rl.engine.loggers import REPORT_TARGETS

    return list(REPORT_TARGETS)


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
    data_dir: str | None = _help("folder searched first for the named data sets (default $EXPO_RL_DATA); files it lacks come from the packaged copy, then the hub", default=None)
    levels: list[int] | None = _help("keep only these MATH levels (problems without a level are dropped)", default=None)
    limit: int | None = _help("use at most this many questions (after the level filter)", default=None)
    instruction: str | None = _help("prompt instruction after the question (default: the policy layer's; "
                                    "none for conversational 'messages' rows)", default=None)
    system_prompt: str | None = _help("system turn of every prompt (rows whose 'messages' have their own "
                                      "system turn keep theirs)", default=None)
    task: str | None = _help(
        "task plugin instead of a data set: a built-in name (modular, addition) or a .py file defining a DemoTask "
        "(docs/ADDING_A_TASK.md); its generator makes the questions, its prompts are used as they are, "
        "terms.N.reward: task is its verifier, self-explanations use its hinted prompt", default=None)
    task_mix: list[int] | None = _help(
        "task runs: questions of each level in every step's block, easiest level first (the training "
        "pool is train.steps such blocks in order; default: one per level)", default=None)
    task_held_out: int = _help("task runs: held-out questions per level, never trained on (the evaluation "
                               "set of eval.*)", default=64)
    on_overlong: Literal["warn", "skip"] = _help(
        "questions whose prompt + sampling.max_new_tokens exceed the model's context: warn (count "
        "them, train anyway) or skip them", default="warn")


@dataclass
class SamplingConfig:
    temperature: float = _help("sampling temperature for every source that samples", default=0.9)
    top_p: float = _help("nucleus sampling threshold", default=1.0)
    max_new_tokens: int = _help("generation length cap (tokens)", default=256)
    batch_size: int | None = _help("sequences per generation forward pass (default: all at once)", default=None)
    stop: list[str] = _help(
        "extra stop strings, each exactly one token of the tokenizer (e.g. \"\\n\" for one-line answers "
        "after few-shot examples): a completion ends at the first one as at EOS, which it keeps as its "
        "last token", default_factory=list)
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
class RewardConfig:
    name: str = _help("a registry name (correctness, format, overlong_penalty, ...) or 'module:function'")
    weight: float = _help("multiplier of this reward in the term's weighted sum", default=1.0)
    args: dict[str, Any] = _help("keyword arguments bound to the reward function", default_factory=dict)
    label: str | None = _help("name in the log, <term>/reward/<label> (default: name, or the function "
                              "of 'module:function')", default=None)

    @property
    def key(self) -> str:
        return self.label or self.name.rpartition(":")[2]


@dataclass
class TermConfig:
    source: str = _help("data source (registry name)", metadata={"choices": _sources})
    coefficient: str = _help("gradient coefficient (registry name)", metadata={"choices": _coefficients})
    name: str | None = _help("label in metrics and cache files (default: the coefficient name)", default=None)
    reward: str | Callable[..., float] | None = _help(
        "reward for rows the source did not score: a registry name or 'module:function' (in Python: "
        "the function itself)", default="correctness")
    rewards: list[RewardConfig] | None = _help(
        "several weighted rewards [{name, weight, args, label}], summed; replaces 'reward' and logs "
        "each as <term>/reward/<label>", default=None)
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
    mixed_precision: Literal["auto", "no", "bf16"] = _help(
        "bf16 autocast: auto = bf16 on GPU, off on CPU; bf16 = on GPU and CPU", default="auto")
    output_dir: str = _help("where metrics, checkpoints and caches go", default="runs/default")
    save_every: int = _help("checkpoint every N steps (0: only at the end)", default=0)
    keep_last: int = _help("keep the newest N complete checkpoints (0: keep all)", default=2)
    tensorboard: bool = _help("deprecated shorthand for report_to: [tensorboard] (used only when report_to "
                              "is null)", default=True)
    report_to: list[str] | None = _help(
        "where scalars go besides metrics.jsonl: any of tensorboard, wandb, trackio (null: tensorboard "
        "when train.tensorboard)", default=None, metadata={"choices": _report_targets})
    project: str = _help("wandb / trackio project name (the run is named after output_dir)", default="expo-rl")
    plot: bool = _help("draw learning curves (PNG) into <output_dir>/plots at the end of 'expo-rl train'",
                       default=True)
    log_entropy: bool = _help("log the sampling policy's per-token entropy (one extra no-grad forward "
                              "pass per step when mu = 1)", default=True)
    progress: bool = _help("show progress bars", default=True)
    on_nonfinite: Literal["stop", "skip"] = _help(
        "an update with a non-finite loss or gradient norm: stop the run (nothing saved), or skip "
        "the update and go on (logged as optim/skipped_updates)", default="stop")


@dataclass
class EvalConfig:
    every: int = _help("held-out pass@k every N steps and before step 1, logged as eval/L<level>/pass@<k> "
                       "(0: not during training)", default=0)
    data: str | None = _help("evaluation questions: a load_problems name or path (default for task runs: the "
                             "task's held-out set)", default=None)
    limit: int | None = _help("evaluate the first N questions of each level during training (null: all)",
                              default=None)
    n: int = _help("samples per question during training", default=4)
    k: list[int] = _help("pass@k values logged during training (each <= eval.n)", default_factory=lambda: [1])
    temperature: float | None = _help("evaluation sampling temperature (null: sampling.temperature)", default=None)
    final_n: int = _help("after the last step: every evaluation question with final_n samples, written to "
                         "<output_dir>/eval_final.json (0: no final evaluation)", default=0)
    final_k: list[int] = _help("pass@k values of the final evaluation (each <= final_n)",
                               default_factory=lambda: [1])
    initial: bool = _help("also before step 1 with the final evaluation's settings (every question, final_n "
                          "samples), written to <output_dir>/eval_initial.json: the run's 'before' table",
                          default=False)
    seed: int | None = _help("evaluation sampling seed (null: 7777 * train.seed, the same for every "
                             "checkpoint and method)", default=None)


@dataclass
class RunConfig:
    method: str = _help("free-text label of the method (sft, grpo, exp_grpo, ...)", default="")
    terms: list[TermConfig] = _help("loss terms: source x reward x coefficient x weight", default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


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
    names = preset_names() + [f"{folder}/{p.stem}" for folder in ("gpu", "demo")
                              for p in sorted((PRESET_DIR / folder).glob("*.yaml"))]
    raise ConfigError(f"no config file or preset named {name_or_path!r}; presets: {', '.join(names)}")


def load_config(name_or_path: str, overrides: list[str] = ()) -> RunConfig:
    """Read a preset/YAML file, apply ``key=value`` overrides, validate (see :func:`validate`)."""
    data = load_yaml(str(resolve_preset(name_or_path)))
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value)
    return validate(from_dict(RunConfig, data))


def validate(config: RunConfig, *, held_out_given: bool = False) -> RunConfig:
    """Cross-field checks and each term's registry options; returns ``config`` unchanged.
    ``held_out_given``: the caller passes held-out problems as objects (``eval.data`` not needed)."""
    # torch-heavy registries, imported on first use (see _sources)
    from expo_rl.core.aggregation import LOSS_AGGREGATIONS
    from expo_rl.core.coefficients import get_coefficient
    from expo_rl.engine.ranges import check_config, check_source_options
    from expo_rl.sources import get_source

    if not config.terms:
        raise ConfigError("config key 'terms' is required: at least one loss term (source + coefficient)")
    if config.train.loss_aggregation not in LOSS_AGGREGATIONS:
        raise ConfigError(f"config key 'train.loss_aggregation': {config.train.loss_aggregation!r} is not "
                          f"allowed; allowed values: {', '.join(LOSS_AGGREGATIONS)}")
    for key in ("steps", "mu", "grad_accum"):
        if getattr(config.train, key) < 1:
            raise ConfigError(f"config key 'train.{key}': must be >= 1")
    _validate_eval(config, held_out_given)
    mix = config.data.task_mix
    if mix is not None and (any(c < 0 for c in mix) or not sum(mix)):
        raise ConfigError(f"config key 'data.task_mix': {mix} must be counts >= 0, at least one > 0")
    labels = [t.label for t in config.terms]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"config key 'terms': term names must differ (got {labels}); set terms.N.name")
    check_config(config)  # every number with a sign or range (expo_rl.engine.ranges)
    for i, term in enumerate(config.terms):
        check_source_options(from_dict(get_source(term.source).options, term.source_args,
                                       f"terms.{i}.source_args"), f"terms.{i}.source_args")
        check_kwargs(get_coefficient(term.coefficient), term.coefficient_args,
                     f"terms.{i}.coefficient_args")
        if not callable(term.reward):
            check_reward_name(term.reward, f"terms.{i}.reward")
        if term.rewards is not None:
            if term.reward not in (None, "correctness"):
                raise ConfigError(f"config key 'terms.{i}': set either 'reward' ({term.reward!r}) or "
                                  "'rewards' (a list of {name, weight}), not both")
            if not term.rewards:
                raise ConfigError(f"config key 'terms.{i}.rewards': give at least one reward, or null")
            labels = [r.key for r in term.rewards]
            if len(set(labels)) != len(labels):
                raise ConfigError(f"config key 'terms.{i}.rewards': labels must differ (got {labels}); "
                                  "set 'label' on repeated rewards")
            for k, spec in enumerate(term.rewards):
                check_reward_name(spec.name, f"terms.{i}.rewards.{k}.name")
    return config


def _validate_eval(config: RunConfig, held_out_given: bool = False) -> None:
    e = config.eval
    for key in ("every", "final_n"):
        if getattr(e, key) < 0:
            raise ConfigError(f"config key 'eval.{key}': must be >= 0, got {getattr(e, key)}")
    if e.n < 1:
        raise ConfigError(f"config key 'eval.n': must be >= 1, got {e.n}")
    if e.initial and not e.final_n:
        raise ConfigError("config key 'eval.initial': true needs eval.final_n >= 1 (its sample count)")
    for key, ks, n in (("eval.k", e.k, e.n), ("eval.final_k", e.final_k, e.final_n)):
        if n and (not ks or min(ks) < 1 or max(ks) > n):
            raise ConfigError(f"config key '{key}': {ks}; allowed: values from 1 to {n} (its sample count)")
    if (e.every or e.final_n) and e.data is None and config.data.task is None and not held_out_given:
        raise ConfigError("config key 'eval.data' is required when eval.every or eval.final_n is set: a "
                          "load_problems name or path (task runs default to the task's held-out set)")


def check_reward_name(name: str | None, key: str) -> None:
    """A reward is null, a registry name, or 'module:function' (imported when the run is built)."""
    if name is not None and ":" not in name and name not in reward_names():
        raise ConfigError(f"config key '{key}': {name!r} is not allowed; allowed values: "
                          f"{', '.join(reward_names())}, null, or 'module:function'")


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
