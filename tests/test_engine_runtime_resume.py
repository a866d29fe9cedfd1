"""Resume: a run hard-killed (SIGKILL) while writing checkpoint k+1 and resumed with ``--resume``
logs the same metrics at every step as an uninterrupted run (timings aside), and the
half-written checkpoint is never loaded.

The GRPO preset exercises everything that must survive a restart: on-policy sampling seeds,
the data position, the optimiser moments, the schedule, the frozen reference and mu = 2 inner
updates (old log-probs).
"""

import os
import signal
import subprocess
import sys
import textwrap

from expo_rl.cli import main
from expo_rl.engine import checkpoint
from expo_rl.engine.metrics import read_metrics, without_timings

STEPS, KILL_WHILE_SAVING = 4, 3
COMMON = ["--set", f"train.steps={STEPS}", "--set", "train.save_every=1", "--set", "train.keep_last=3",
          "--set", "train.progress=false", "--set", "train.tensorboard=false",
          # a random tiny model is never correct; a user reward that splits its samples gives
          # GRPO's groups a signal, so the policy really changes from step to step
          "--set", "terms.0.reward=toy_reward:odd_length"]
REWARD_MODULE = "def odd_length(completion, reference, **fields):\n    return float(len(completion) % 2)\n"

# Runs the real CLI in a child process and SIGKILLs it in the middle of writing checkpoint
# KILL_WHILE_SAVING: after the policy is written and while accelerate writes the optimiser state.
KILLER = textwrap.dedent(f"""
    import os, signal, sys
    from accelerate import Accelerator
    original = Accelerator.save_state
    def save_state(self, output_dir=None, **kwargs):
        if "step-{KILL_WHILE_SAVING:06d}" in str(output_dir):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, output_dir, **kwargs)
    Accelerator.save_state = save_state
    from expo_rl.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _metrics(out_dir):
    return [without_timings(r) for r in read_metrics(out_dir / "metrics.jsonl")]


def test_killed_run_resumes_to_identical_metrics(tmp_path, monkeypatch):
    (tmp_path / "toy_reward.py").write_text(REWARD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(["train", "grpo", *COMMON, "--set", f"train.output_dir={straight}"]) == 0

    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}
    child = subprocess.run([sys.executable, "-c", KILLER, "train", "grpo", *COMMON, "--set",
                            f"train.output_dir={killed}"], env=env, capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    root = killed / "checkpoints"
    assert (root / f".tmp-step-{KILL_WHILE_SAVING:06d}").is_dir()  # the interrupted write
    assert checkpoint.find_latest_checkpoint(root) == root / f"step-{KILL_WHILE_SAVING - 1:06d}"
    # the step finished before the kill was logged but has no checkpoint
    assert [r["step"] for r in read_metrics(killed / "metrics.jsonl")] == [1, 2, 3]

    assert main(["train", "grpo", *COMMON, "--set", f"train.output_dir={killed}", "--resume"]) == 0
    expected, resumed = _metrics(straight), _metrics(killed)
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    assert resumed == expected
    # GRPO had a signal and the policy moved: not a run where nothing changes
    assert any(r["grpo/zero_signal_groups"] < r["grpo/groups"] for r in expected)
    assert all(r["optim/grad_norm"] > 0 for r in expected)
    assert len({r["grpo/kl"] for r in expected}) > 1
    assert [s for s, _ in checkpoint.list_checkpoints(root)] == [2, 3, 4]
    assert not (root / f".tmp-step-{KILL_WHILE_SAVING:06d}").exists()


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    out = tmp_path / "fresh"
    assert main(["train", "sft", "--set", "train.steps=1", "--set", "train.progress=false",
                 "--set", "train.tensorboard=false", "--set", f"train.output_dir={out}", "--resume"]) == 0
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1]
