"""Config errors from presets and --set name the key and the allowed values."""

import pytest

from expo_rl.cli import main
from expo_rl.engine.config import load_config
from expo_rl.engine.typed_config import ConfigError


@pytest.mark.parametrize("override, fragments", [
    ("optim.schedule=linear", ["'optim.schedule'", "allowed values: cosine, constant"]),
    ("optim.lrr=1", ["unknown key 'optim.lrr'", "valid keys under 'optim': lr,", "did you mean 'lr'"]),
    ("train.steps=many", ["'train.steps'", "expected int", "many"]),
    ("train.mixed_precision=fp8", ["'train.mixed_precision'", "auto, no, bf16"]),
    ("terms.0.source=telepathy", ["'terms.0.source'", "fixed", "on_policy", "preference_pairs"]),
    ("terms.0.coefficient=magic", ["'terms.0.coefficient'", "allowed values:"]),
    ("terms.0.source_args.group_sise=3", ["unknown key 'terms.0.source_args.group_sise'",
                                          "group_size", "did you mean 'group_size'"]),
    ("terms.0.source_args.group_size=two", ["'terms.0.source_args.group_size'", "expected int"]),
    ("terms.0.coefficient_args.bogus=1", ["unknown key 'terms.0.coefficient_args.bogus'", "valid keys"]),
    ("terms.0.reward=nonsense", ["'terms.0.reward'", "correctness", "module:function"]),
    ("train.loss_aggregation=median", ["'train.loss_aggregation'", "allowed values:"]),
    ("train.grad_accum=0", ["'train.grad_accum'", ">= 1"]),
    ("sampling.draw=gumbel", ["'sampling.draw'", "allowed values: multinomial, inverse_cdf"]),
])
def test_bad_override_names_key_and_allowed_values(override, fragments):
    with pytest.raises(ConfigError) as error:
        load_config("grpo", [override])
    for fragment in fragments:
        assert fragment in str(error.value)


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="presets: .*grpo"):
        load_config("grpo2")


def test_yaml_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method: x\nterms:\n  - source: fixed\n   coefficient: sft\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+"):
        load_config(str(path))


def test_cli_prints_config_error_and_exits_2(capsys):
    assert main(["train", "sft", "--set", "optim.schedule=linear"]) == 2
    assert "allowed values: cosine, constant" in capsys.readouterr().err


def test_print_config_shows_overrides(capsys):
    assert main(["train", "sft", "--set", "optim.lr=2e-5", "--print-config"]) == 0
    assert "lr: 2.0e-05" in capsys.readouterr().out


def test_online_sources_warn_when_checkpoints_split_a_generation():
    from expo_rl.engine.config import resume_warnings

    aligned = load_config("exp_dpo_online", ["train.save_every=4", "terms.0.source_args.refresh_every=2"])
    assert resume_warnings(aligned) == []
    split = load_config("exp_dpo_online", ["train.save_every=3", "terms.0.source_args.refresh_every=2"])
    (note,) = resume_warnings(split)
    assert "'train.save_every' (3)" in note and "'terms.0.source_args.refresh_every' (2)" in note
    assert resume_warnings(load_config("exp_grpo", ["train.save_every=3"])) == []  # offline: exact
