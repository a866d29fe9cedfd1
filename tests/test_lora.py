"""LoRA through peft (issue 12): the reference is the base model with adapters disabled, only
adapters train, less peak memory than a full fine-tune, resume, and ``expo-rl merge``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from expo_rl.cli import main
from expo_rl.engine.config import load_config
from expo_rl.engine.metrics import read_metrics, without_timings
from expo_rl.engine.runtime import make_accelerator, setup, train_step
from expo_rl.policy import completion_logprobs, load_policy, pack_sequences
from expo_rl.policy.lora import adapter_disabled, is_lora

QUIET = ["train.progress=false", "train.tensorboard=false"]
# a user reward that splits the samples, so GRPO has a signal and the adapter moves
REWARD_MODULE = "def odd_length(completion, reference, **fields):\n    return float(len(completion) % 2)\n"


@pytest.fixture
def toy_reward(tmp_path, monkeypatch):
    (tmp_path / "toy_reward.py").write_text(REWARD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return ["terms.0.reward=toy_reward:odd_length"]


def _lora_run(tmp_path, extra=()):
    config = load_config("grpo", [*QUIET, "model.lora.r=8", "optim.lr=1e-2", f"train.output_dir={tmp_path / 'run'}",
                                  *extra])
    return setup(config, make_accelerator(config))


def _packed(tokenizer):
    prompt = tokenizer("What is 2 + 3?", add_special_tokens=False)["input_ids"]
    completion = tokenizer(" The answer is \\boxed{5}.", add_special_tokens=False)["input_ids"]
    return pack_sequences([prompt], [completion], tokenizer.pad_token_id)


def test_reference_is_base_model_and_only_adapters_train(tmp_path, toy_reward):
    run = _lora_run(tmp_path, toy_reward)
    assert is_lora(run.model) and run.frozen.model is None  # no frozen copy was loaded
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    trainable = {id(p) for p in run.model.parameters() if p.requires_grad}
    in_optimizer = [p for group in run.optimizer.param_groups for p in group["params"]]
    assert in_optimizer and all(id(p) in trainable for p in in_optimizer)
    assert len(in_optimizer) == len(trainable)
    train_step(run, 1)
    train_step(run, 2)
    after = run.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "the adapter did not move"
    assert all(".lora_" in k for k in changed), sorted(changed)[:5]
    assert any(".lora_B." in k for k in changed)
    assert run.frozen.model is None  # reference log-probs came from the adapter-disabled policy

    ids, mask, completion = _packed(run.tokenizer)
    frozen, _ = load_policy("tiny:qwen2")
    with torch.no_grad():
        expected = completion_logprobs(frozen.eval(), ids, mask, completion)
        with run.frozen.reference() as reference:
            got = completion_logprobs(reference, ids, mask, completion)
        with adapter_disabled(run.model) as base:
            also = completion_logprobs(base, ids, mask, completion)
        adapted = completion_logprobs(run.model.eval(), ids, mask, completion)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(also, expected, rtol=0, atol=1e-6)
    assert (adapted - expected).abs().max() > 1e-4  # the adapter is on outside the context


PEAK = r"""
import sys
from expo_rl.engine.config import load_config
from expo_rl.engine.runtime import make_accelerator, setup, train_step
config = load_config("grpo", sys.argv[1:])
run = setup(config, make_accelerator(config))
train_step(run, 1)
with open("/proc/self/status") as f:
    print(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc/self/status")
def test_lora_peak_memory_below_full_fine_tune(tmp_path):
    """Peak RSS of set-up + one GRPO step on a 20M-parameter model: the full fine-tune holds a
    frozen reference copy, gradients and two AdamW moments of every weight; LoRA holds none."""
    common = [*QUIET, "model.policy=tiny:qwen2:20m", "sampling.max_new_tokens=4", "train.mu=1"]
    # glibc's dynamic mmap threshold keeps freed blocks resident (see test_policy_memory.py)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_=str(2**20))
    peaks = {}
    for name, extra in (("full", []), ("lora", ["model.lora.r=8"])):
        out = subprocess.run([sys.executable, "-c", PEAK, *common, *extra, f"train.output_dir={tmp_path / name}"],
                             capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        peaks[name] = int(out.stdout.strip().splitlines()[-1]) / 1024  # MiB
    # 20M fp32 parameters = 80 MiB. Measured 905 vs 982 MiB: a transient of the step (sampling and
    # log-probs, the same in both) sets both peaks; the full run holds the reference copy on top.
    assert peaks["lora"] < peaks["full"] - 40, peaks


def test_lora_resume_gives_same_metrics_and_merge_writes_hf_model(tmp_path, toy_reward):
    common = ["--set", "model.lora.r=8", "--set", "optim.lr=1e-2", "--set", "train.steps=4",
              "--set", "train.save_every=2", "--set", "train.keep_last=0", "--set", toy_reward[0]]
    for key in QUIET:
        common += ["--set", key]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "grpo", *common, "--set", f"train.output_dir={straight}"]) == 0
    # a run stopped after its step-2 checkpoint: the checkpoint and the metrics logged so far
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(straight / "checkpoints" / "step-000002", resumed / "checkpoints" / "step-000002")
    lines = (straight / "metrics.jsonl").read_text().splitlines()
    (resumed / "metrics.jsonl").write_text("\n".join(lines[:2]) + "\n")
    policy = straight / "checkpoints" / "step-000002" / "policy"
    assert (policy / "adapter_config.json").is_file() and not (policy / "model.safetensors").exists()
    assert main(["train", "grpo", *common, "--set", f"train.output_dir={resumed}", "--resume"]) == 0
    expected = [without_timings(r) for r in read_metrics(straight / "metrics.jsonl")]
    got = [without_timings(r) for r in read_metrics(resumed / "metrics.jsonl")]
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    assert got == expected
    assert len({r["grpo/kl"] for r in expected}) > 1  # the adapter moved: KL to the base changes

    out = tmp_path / "merged"
    assert main(["merge", str(straight), "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen2"
    merged, tokenizer = load_policy(str(out))
    assert not is_lora(merged)
    from peft import PeftModel

    base, _ = load_policy("tiny:qwen2")
    adapted = PeftModel.from_pretrained(base, str(straight / "checkpoints" / "step-000004" / "policy"))
    ids, mask, completion = _packed(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(completion_logprobs(merged.eval(), ids, mask, completion),
                                   completion_logprobs(adapted.eval(), ids, mask, completion), rtol=0, atol=1e-5)
        plain_model, _ = load_policy("tiny:qwen2")  # from_pretrained put the adapter into `base`
        plain = completion_logprobs(plain_model.eval(), ids, mask, completion)
    assert (completion_logprobs(merged.eval(), ids, mask, completion) - plain).abs().max() > 1e-4
