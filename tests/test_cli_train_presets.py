"""``expo-rl train`` end to end with every shipped tiny preset, and every preset (tiny and GPU)
loads and validates without running."""

import pytest
from safetensors.torch import load_file

from expo_rl.cli import build_parser, main
from expo_rl.engine import checkpoint
from expo_rl.engine.config import PRESET_DIR, RunConfig, load_config, preset_names
from expo_rl.engine.metrics import read_metrics
from expo_rl.engine.typed_config import describe

TINY = ["sft", "rft", "online_rft", "dpo", "ppo", "grpo"]
GPU = [f"gpu/{p.stem}" for p in sorted((PRESET_DIR / "gpu").glob("*.yaml"))]
DEMO = [f"demo/{p.stem}" for p in sorted((PRESET_DIR / "demo").glob("*.yaml"))]


def test_the_six_methods_ship_for_tiny_and_gpu():
    assert set(TINY) <= set(preset_names())
    assert {f"gpu/{m}" for m in TINY} <= set(GPU)


@pytest.mark.parametrize("name", preset_names() + GPU + DEMO)
def test_every_preset_validates(name):
    config = load_config(name)
    assert config.terms and config.train.steps >= 1
    if name.startswith("demo/"):  # expo-rl demo's methods: the shipped base model on a task plugin
        assert config.model.policy == "demo-base" and config.data.task == "modular"
    elif name.startswith("gpu/"):
        assert config.train.mixed_precision == "bf16" and not config.model.policy.startswith("tiny:")
    else:
        assert config.model.policy.startswith("tiny:") and config.train.steps <= 3


# What a GRPO step logs (SPEC 2.5 and the metric list); other methods log their own subset.
GRPO_KEYS = {"grpo/reward_mean", "grpo/accuracy", "grpo/kl", "grpo/clip_frac", "grpo/entropy",
             "grpo/response_len", "grpo/zero_signal_groups", "grpo/groups", "grpo/gc_mean",
             "grpo/gc_abs_mean", "grpo/objective", "optim/lr", "optim/grad_norm", "time/step_s"}


@pytest.mark.parametrize("name", TINY)
def test_tiny_preset_trains_end_to_end(name, tmp_path):
    out = tmp_path / name
    tensorboard = name == "sft"  # once is enough: it is the slowest writer
    # GRPO samples with the inverse-CDF draw (online RFT and PPO keep the default multinomial)
    draw = ["--set", "sampling.draw=inverse_cdf"] if name == "grpo" else []
    assert main(["train", name, "--set", f"train.output_dir={out}", "--set", "train.progress=false",
                 "--set", f"train.tensorboard={str(tensorboard).lower()}", *draw]) == 0
    config = load_config(name)
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, config.train.steps + 1))
    label = config.terms[0].name or config.terms[0].coefficient
    assert all(f"{label}/objective" in r and r["optim/lr"] > 0 for r in rows)
    latest = checkpoint.find_latest_checkpoint(out / "checkpoints")
    assert latest is not None and latest.name == f"step-{config.train.steps:06d}"
    assert load_file(latest / "policy" / "model.safetensors")  # HF-format policy
    if name == "grpo":
        assert GRPO_KEYS <= set(rows[-1]), GRPO_KEYS - set(rows[-1])
    if tensorboard:
        assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_help_explains_every_key_and_lists_presets(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for key, _type, help_text in describe(RunConfig):
        assert key in text and help_text, key
    for option in ("--set", "--resume", "--print-config"):
        assert option in text
    assert "grpo" in text and "gpu/grpo" in text
    from expo_rl.core.coefficients import COEFFICIENTS
    from expo_rl.sources import SOURCES

    for name, spec in SOURCES.items():  # every source with each of its options
        assert f"  {name}: " in text
        for option in spec.options.__dataclass_fields__:
            assert f"      {option} (default" in text
    assert all(f"  {name}(" in text for name in COEFFICIENTS)
