"""Distributed: one step on 2 CPU processes (gloo; launched with torchrun, which ``accelerate
launch`` wraps on GPUs; ``accelerate launch --cpu`` would need MPI) equals the single-process
step on the same global batch.

AdamW's first update is lr * g / (|g| + eps); with eps = 1 and lr = 1 it is g / (|g| + 1), so
the parameters after the step are a smooth function of the gradient and any mismatch in the
averaged gradient shows up in them (with the default eps the update is ~lr * sign(g) and would
hide it).
"""

import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from expo_rl.engine.metrics import read_metrics, without_timings

OVERRIDES = ["train.steps=1", "train.progress=false", "train.tensorboard=false", "optim.lr=1.0",
             "optim.eps=1.0", "optim.max_grad_norm=null", "optim.warmup_ratio=0.0",
             "optim.schedule=constant", "terms.0.source_args.rows_per_step=4"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(out_dir, launcher: list[str]) -> None:
    args = [a for o in OVERRIDES + [f"train.output_dir={out_dir}"] for a in ("--set", o)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([*launcher, "-m", "expo_rl.cli", "train", "sft", *args], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _weights(out_dir):
    return load_file(out_dir / "checkpoints" / "step-000001" / "policy" / "model.safetensors")


@pytest.mark.slow
def test_two_process_step_matches_single_process(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    _train(single, [sys.executable])
    _train(double, [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_port", str(_free_port())])
    a, b = _weights(single), _weights(double)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=lambda m, key=key: f"{key}: {m}")
    # the step did move the weights: the comparison is not between two untouched copies
    from expo_rl.engine.config import load_config
    from expo_rl.policy import load_policy

    torch.manual_seed(load_config("sft").train.seed)
    initial, _ = load_policy("tiny:qwen2")
    moved = max((a[k] - v.detach()).abs().max().item() for k, v in initial.state_dict().items() if k in a)
    assert moved > 1e-3
    # both saw the same 4 rows and the same global gradient norm
    m1, m2 = (without_timings(read_metrics(d / "metrics.jsonl")[0]) for d in (single, double))
    assert m1["sft/rows"] == m2["sft/rows"] == 4
    assert m2["optim/grad_norm"] == pytest.approx(m1["optim/grad_norm"], rel=1e-5)
