"""Settings with a sign or a range are checked at load time, before any model is loaded, and the
error names the key and the allowed range (issue 16, worst case 5: settings that reverse
optimisation)."""

import pytest

from expo_rl.cli import main
from expo_rl.engine.config import load_config, preset_names
from expo_rl.engine.typed_config import ConfigError

BAD = [
    ("sft", "optim.max_grad_norm=-1", "optim.max_grad_norm", "> 0 or null"),
    ("sft", "optim.min_lr_ratio=-1", "optim.min_lr_ratio", "in [0, 1]"),
    ("dpo", "terms.0.coefficient_args.beta=-0.1", "terms.0.coefficient_args.beta", "> 0"),
    ("sft", "optim.lr=0", "optim.lr", "> 0"),
    ("sft", "optim.lr=.nan", "optim.lr", "> 0"),
    ("sft", "optim.lr=.inf", "optim.lr", "> 0"),
    ("sft", "optim.warmup_ratio=1", "optim.warmup_ratio", "in [0, 1)"),
    ("sft", "optim.weight_decay=-0.1", "optim.weight_decay", ">= 0"),
    ("sft", "optim.betas=[0.9,1.0]", "optim.betas", "in [0, 1)"),
    ("sft", "optim.eps=0", "optim.eps", "> 0"),
    ("grpo", "sampling.temperature=0", "sampling.temperature", "> 0"),
    ("grpo", "sampling.top_p=0", "sampling.top_p", "in (0, 1]"),
    ("grpo", "sampling.top_p=1.5", "sampling.top_p", "in (0, 1]"),
    ("grpo", "sampling.max_new_tokens=0", "sampling.max_new_tokens", ">= 1"),
    ("grpo", "terms.0.weight=-1", "terms.0.weight", ">= 0"),
    ("grpo", "terms.0.coefficient_args.clip_eps=0", "terms.0.coefficient_args.clip_eps", "> 0"),
    ("grpo", "terms.0.coefficient_args.beta=-0.04", "terms.0.coefficient_args.beta", ">= 0"),
    ("ppo", "terms.0.coefficient_args.gamma=1.5", "terms.0.coefficient_args.gamma", "in [0, 1]"),
    ("grpo", "terms.0.source_args.group_size=0", "terms.0.source_args.group_size", ">= 1"),
    ("sft", "train.save_every=-1", "train.save_every", ">= 0"),
    ("sft", "train.keep_last=-2", "train.keep_last", ">= 0"),
    ("sft", "train.seed=-1", "train.seed", ">= 0"),
    ("sft", "data.limit=0", "data.limit", ">= 1"),
    ("exp_grpo", "terms.1.source_args.hint_fraction=2", "terms.1.source_args.hint_fraction", "in [0, 1]"),
    ("exp_grpo", "terms.1.source_args.refresh_every=-1", "terms.1.source_args.refresh_every", ">= 0"),
]


@pytest.mark.parametrize(("preset", "override", "key", "allowed"), BAD, ids=[b[1] for b in BAD])
def test_out_of_range_values_are_refused_naming_key_and_range(preset, override, key, allowed):
    with pytest.raises(ConfigError) as error:
        load_config(preset, [override])
    assert f"'{key}'" in str(error.value) and f"allowed: {allowed}" in str(error.value)


@pytest.mark.parametrize("override", ["optim.max_grad_norm=null", "optim.min_lr_ratio=1", "optim.warmup_ratio=0",
                                      "sampling.top_p=1", "train.keep_last=0", "terms.0.weight=0"])
def test_edge_values_inside_the_range_are_accepted(override):
    load_config("grpo", [override])


def test_every_shipped_preset_is_in_range():
    for name in preset_names():
        load_config(name)


def test_refused_before_any_model_is_loaded(tmp_path, monkeypatch, capsys):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("expo_rl.engine.recipe.load_policy", no_model)  # load_parts loads the model
    assert main(["train", "sft", "--set", "optim.max_grad_norm=-1", "--set", f"train.output_dir={tmp_path}"]) == 2
    assert "optim.max_grad_norm" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["eval", "--model", "tiny:qwen2", "--n", "0", "--out", "x"],
    ["eval", "--model", "tiny:qwen2", "--top-p", "0", "--out", "x"],
    ["eval", "--model", "tiny:qwen2", "--temperature", "-1", "--out", "x"],
    ["eval", "--model", "tiny:qwen2", "--max-new-tokens", "0", "--out", "x"],
    ["explain", "--model", "tiny:qwen2", "--data", "d", "--hint-fraction", "2", "--out", "x"],
    ["explain", "--model", "tiny:qwen2", "--data", "d", "--n", "-3", "--out", "x"],
    ["diagnose", "--model", "tiny:qwen2", "--data", "d", "--top-p", "1.1", "--out", "x"],
])
def test_cli_flags_out_of_range_exit_2_naming_the_flag(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "is not allowed; allowed:" in err and "argument --" in err
