"""train.mixed_precision: auto is bf16 on GPU only; an explicit bf16 runs on CPU too, and the
training forward (the bare decoder and LM head, which the prepared model's autocast wrapper never
sees) runs in bf16 with fp32 parameters and gradients."""

import math

import pytest
import torch
from accelerate.state import AcceleratorState

from expo_rl.engine.config import load_config
from expo_rl.engine.runtime import make_accelerator, setup, train_step
from expo_rl.policy.logprobs import unwrap

ON_GPU = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one state per process and refuses another mixed_precision: reset around each test."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.skipif(ON_GPU, reason="CPU behaviour")
# quoted: YAML reads a bare no as False
@pytest.mark.parametrize("setting, expected", [("auto", "no"), ("'no'", "no"), ("bf16", "bf16")])
def test_cpu_autocast_only_when_asked(setting, expected):
    config = load_config("grpo", [f"train.mixed_precision={setting}"])
    assert make_accelerator(config).mixed_precision == expected


def test_bf16_training_step_runs_the_forward_in_bf16(tmp_path):
    config = load_config("grpo", ["train.mixed_precision=bf16", "train.progress=false", "train.tensorboard=false",
                                  "train.mu=1", f"train.output_dir={tmp_path}"])
    run = setup(config, make_accelerator(config))
    model = unwrap(run.model)
    dtypes: dict[bool, set[torch.dtype]] = {True: set(), False: set()}  # grad enabled -> output dtypes
    model.model.layers[0].mlp.down_proj.register_forward_hook(
        lambda module, inputs, output: dtypes[torch.is_grad_enabled()].add(output.dtype))
    metrics = train_step(run, 1)
    assert dtypes[True] == {torch.bfloat16}  # the training forward
    assert dtypes[False] == {torch.bfloat16}  # sampling and the reference
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert math.isfinite(metrics["optim/grad_norm"])
