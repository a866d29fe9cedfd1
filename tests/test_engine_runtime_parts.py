"""Optimiser schedule, data cursor, metrics file and atomic checkpoints (no training loop)."""

import json
import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

import expo_rl
from expo_rl.engine import checkpoint as ckpt
from expo_rl.engine.metrics import MetricsLogger, read_metrics, without_timings
from expo_rl.engine.optim import build_optimizer, build_scheduler, lr_multiplier
from expo_rl.sources.cursor import Cursor

TOKENIZER = str(Path(expo_rl.__file__).parent / "assets" / "tiny_tokenizer")


def test_schedules_warm_up_then_decay():
    total = 20  # warm-up ceil(0.1 * 20) = 2 updates: 1/2, 2/2
    cos = [lr_multiplier(u, total_updates=total, schedule="cosine", warmup_ratio=0.1) for u in range(total)]
    assert cos[:3] == [0.5, 1.0, 1.0]
    assert all(a >= b for a, b in zip(cos[1:], cos[2:]))  # non-increasing after warm-up
    # the cosine reaches its floor at u = total: the last update sits one step before it
    assert cos[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 17 / 18)))
    const = [lr_multiplier(u, total_updates=total, schedule="constant", warmup_ratio=0.1) for u in range(total)]
    assert const == [0.5] + [1.0] * (total - 1)
    with pytest.raises(ValueError, match="cosine, constant"):
        lr_multiplier(0, total_updates=3, schedule="linear")


def test_optimizer_groups_and_scheduler_drive_lr():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    opt = build_optimizer(model.parameters(), lr=0.1, weight_decay=0.01)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert len(opt.param_groups[0]["params"]) == 1  # only the 2-d weight decays
    sched = build_scheduler(opt, total_updates=4, schedule="cosine", warmup_ratio=0.5)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.05, 0.1, 0.1, 0.05])


def test_cursor_resumes_exactly_and_reshuffles_per_epoch():
    straight = Cursor(5, seed=3)
    seq = [straight.take(3) for _ in range(4)]
    assert sorted(seq[0] + seq[1][:2]) == list(range(5))  # first epoch is a permutation
    resumed = Cursor(5, seed=3)
    resumed.take(3)
    resumed.take(3)
    state = json.loads(json.dumps(resumed.state_dict()))
    again = Cursor(5, seed=3)
    again.load_state_dict(state)
    assert [again.take(3) for _ in range(2)] == seq[2:]
    with pytest.raises(ValueError, match="data set or its filters changed"):
        Cursor(6, seed=3).load_state_dict(state)


def test_metrics_jsonl_truncates_past_resume_point(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        log.log(step, {"reward/mean": torch.tensor(0.5 * step), "time/step_s": 1.0, "nan": float("nan")})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 4, "torn')  # a crash mid-line
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[0]["nan"] is None
    assert without_timings(rows[1]) == {"step": 2, "reward/mean": 1.0, "nan": None}
    MetricsLogger(tmp_path, tensorboard=False, resume_step=2).close()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]


def _tiny():
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=2048, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    return Qwen2ForCausalLM(config)


def test_checkpoint_atomic_roundtrip_and_crash_mid_write(tmp_path, monkeypatch):
    accelerator = Accelerator(cpu=True)
    model = _tiny()
    opt = build_optimizer(model.parameters(), lr=1e-2)
    sched = build_scheduler(opt, total_updates=10, schedule="constant")
    model, opt = accelerator.prepare(model, opt)
    accelerator.register_for_checkpointing(sched)
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    root = tmp_path / "checkpoints"

    def update():
        loss = model(input_ids=torch.tensor([[5, 6, 7]]), labels=torch.tensor([[5, 6, 7]])).loss
        accelerator.backward(loss)
        opt.step()
        sched.step()
        opt.zero_grad()

    update()
    first = ckpt.save_checkpoint(accelerator, root, 1, model=model, tokenizer=tokenizer,
                                 trainer_state={"step": 1, "sources": {"t": {"pos": 4}}}, keep_last=2)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    saved_rng = torch.rand(3)

    # A crash while writing checkpoint 2: the temp dir is left behind, never loaded, and cleaned up.
    update()

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(accelerator, "save_state", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        ckpt.save_checkpoint(accelerator, root, 2, model=model, tokenizer=tokenizer, trainer_state={"step": 2})
    monkeypatch.undo()
    assert (root / ".tmp-step-000002").is_dir()
    (root / "step-000003").mkdir()  # a renamed directory without its marker is not loadable either
    assert ckpt.find_latest_checkpoint(root) == first
    with pytest.raises(FileNotFoundError, match="COMPLETE"):
        ckpt.load_checkpoint(accelerator, root / "step-000003")

    torch.manual_seed(123)
    state = ckpt.load_checkpoint(accelerator, first)
    assert state == {"step": 1, "sources": {"t": {"pos": 4}}}
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.rand(3), saved_rng)  # RNG restored to its state at save time
    assert sched.last_epoch == 1
    assert (first / "policy" / "config.json").is_file() and (first / "policy" / "tokenizer.json").is_file()
    reloaded = Qwen2ForCausalLM.from_pretrained(first / "policy")
    assert torch.equal(reloaded.model.embed_tokens.weight, saved["model.embed_tokens.weight"])

    # keep-last-N prunes old checkpoints and stale temp dirs
    for step in (4, 5):
        ckpt.save_checkpoint(accelerator, root, step, model=model, tokenizer=None,
                             trainer_state={"step": step}, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [4, 5]
    assert not (root / ".tmp-step-000002").exists()
