"""Gradient accumulation and gradient checkpointing do not change the update: one SFT step with
the batch split into 2 or 4 micro-batches, or with activations recomputed, lands on the same
parameters as the plain step (AdamW with eps = 1 so the update is smooth in the gradient; see
test_engine_runtime_distributed)."""

import pytest
import torch
from safetensors.torch import load_file

from expo_rl.engine.checkpoint import find_latest_checkpoint
from expo_rl.engine.config import load_config
from expo_rl.engine.runtime import train

BASE = ["train.steps=1", "train.progress=false", "train.tensorboard=false", "optim.lr=1.0",
        "optim.eps=1.0", "optim.max_grad_norm=null", "optim.schedule=constant",
        "terms.0.source_args.rows_per_step=4"]


def _weights(tmp_path, name, extra):
    out = tmp_path / name
    train(load_config("sft", BASE + extra + [f"train.output_dir={out}"]))
    return load_file(find_latest_checkpoint(out / "checkpoints") / "policy" / "model.safetensors")


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return _weights(tmp_path_factory.mktemp("plain"), "plain", [])


@pytest.mark.parametrize("extra", [["train.grad_accum=2"], ["train.grad_accum=4"],
                                   ["model.gradient_checkpointing=true"]])
def test_micro_batches_and_checkpointing_give_the_same_step(tmp_path, plain, extra):
    other = _weights(tmp_path, "other", extra)
    for key in plain:
        torch.testing.assert_close(other[key], plain[key], rtol=1e-5, atol=1e-6,
                                   msg=lambda m, key=key: f"{key}: {m}")
