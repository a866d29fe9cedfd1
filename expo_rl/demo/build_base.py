"""Build the demo's tiny base model: a word-level tokenizer + a ~0.7M-parameter Llama, trained
with the library's SFT (``expo_rl.engine.step``, coefficient ``sft``: SPEC 2.1, GC = 1) on the
task's pretraining corpus (``DemoTask.pretraining_examples``).

For the shipped modular task the corpus is solve traces and answer-hinted traces of levels 1-3,
"check these candidates" traces of levels 1-5 and hinted own-style traces of levels 4-5: the model learns to solve the easy levels, to follow a
hint on every level (which is what makes self-explanations possible), and to verify any level,
but never sees a hard question solved. Result: strong on levels 1-3, near zero on level 5.

    python -m expo_rl.demo.build_base --shipped-recipe   # rebuilds expo_rl/demo/assets/base_model
    expo-rl demo --rebuild-base                           # the same into OUT/base_model, then the demo

The shipped checkpoint is two-stage (``build_shipped_recipe``): 1500 updates from scratch without
the hard-level hinted traces, then 250 with them. It was made by hand in those two steps (the
first stage by an earlier version of the corpus code, same kinds of examples), so a rebuild is
equivalent in distribution, not bit for bit. A single 1500-update build on the full corpus
(``python -m expo_rl.demo.build_base`` without ``--shipped-recipe``) gives a weaker base model
(measured in docs/notes/issue6-demo.md); user tasks get that single-stage build.

Every ``--steps`` update draws a fresh batch of ``--batch`` examples (levels uniformly at
random), so the corpus is effectively unlimited and nothing repeats.
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import AutoModelForCausalLM, AutoTokenizer

from expo_rl.demo.model import ModelSize, build_model, build_tokenizer, n_parameters
from expo_rl.engine.config import load_config
from expo_rl.engine.metrics import read_metrics
from expo_rl.engine.runtime import train
from expo_rl.policy.loading import DEMO_BASE_DIR
from expo_rl.tasks import BUILTIN, DemoTask, load_task
from expo_rl.tasks.modular import ModularTask

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SHIPPED_DIR = DEMO_BASE_DIR
META_FILE = "demo_base.json"
PRESET = "demo/base_sft"
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json")


def corpus_batch(task: DemoTask, rng: random.Random, size: int) -> list[dict[str, str]]:
    """``size`` {"prompt", "completion"} rows drawn from the task's pretraining examples (levels
    uniformly at random; the last question's examples are cut at ``size``)."""
    rows: list[dict[str, str]] = []
    while len(rows) < size:
        level = rng.choice(task.levels)
        rows += [{"prompt": p, "completion": c} for p, c in task.pretraining_examples(level, rng)]
    return rows[:size]


def write_corpus(task: DemoTask, path: Path, *, steps: int, batch: int, seed: int) -> None:
    """``steps`` batches of ``batch`` rows, in training order (the SFT source reads them unshuffled)."""
    rng = random.Random(seed)
    with path.open("w") as handle:
        for _ in range(steps):
            for row in corpus_batch(task, rng, batch):
                handle.write(json.dumps(row) + "\n")


def build_base(task: DemoTask, out_dir: Path, *, steps: int, batch: int, lr: float, seed: int = 0,
               size: ModelSize | None = None, progress: bool = True, init: Path | None = None) -> dict[str, Any]:
    """Train the base model for ``task`` with ``expo-rl train demo/base_sft`` and save model +
    tokenizer + metadata in ``out_dir``.

    ``init``: continue from a saved base model (its tokenizer and shape) instead of a random
    initialisation, e.g. to add a kind of pretraining example without paying for a full build.
    """
    started = time.perf_counter()
    init_meta = None
    with tempfile.TemporaryDirectory(prefix="expo-demo-base-") as scratch:
        scratch = Path(scratch)
        if init is not None:
            start_dir = init
            init_meta = json.loads((init / META_FILE).read_text()) if (init / META_FILE).is_file() else {}
            model, _ = load_base(init)
        else:
            start_dir = scratch / "init"
            tokenizer = build_tokenizer(task.vocabulary())
            model = build_model(len(tokenizer), size or ModelSize(), seed=seed)
            model.save_pretrained(start_dir)
            tokenizer.save_pretrained(start_dir)
        c = model.config
        size = ModelSize(hidden=c.hidden_size, layers=c.num_hidden_layers, heads=c.num_attention_heads,
                         intermediate=c.intermediate_size, max_positions=c.max_position_embeddings)
        corpus = scratch / "corpus.jsonl"
        write_corpus(task, corpus, steps=steps, batch=batch, seed=seed)
        run_dir = scratch / "run"
        config = load_config(PRESET, [f"model.policy={start_dir}", f"data.task={task_spec_of(task)}",
                                      f"train.steps={steps}", f"train.seed={seed}", f"optim.lr={lr}",
                                      f"train.output_dir={run_dir}", f"terms.0.source_args.path={corpus}",
                                      f"terms.0.source_args.rows_per_step={batch}"])
        config.train.progress = progress
        summary = train(config)
        policy_dir = Path(summary["checkpoint"]) / "policy"
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES:
            if (policy_dir / name).is_file():
                shutil.copy2(policy_dir / name, out_dir / name)
        losses = [-row["sft/objective"] for row in read_metrics(run_dir / "metrics.jsonl")]
    meta = {"task": task.name, "steps": steps, "batch": batch, "lr": lr, "seed": seed,
            "size": asdict(size), "parameters": n_parameters(model),
            "final_nll": sum(losses[-50:]) / len(losses[-50:]),
            "seconds": round(time.perf_counter() - started, 1),
            "command": f"expo-rl train {PRESET} (corpus of {steps} x {batch} rows; python -m expo_rl.demo.build_base)"}
    if init is not None:
        meta["init"] = {"path": str(init), **(init_meta or {})}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def task_spec_of(task: DemoTask) -> str:
    """A ``data.task`` value that loads ``task``: its built-in name, else the file it came from."""
    if task.name in BUILTIN:
        return task.name
    return inspect.getfile(type(task))


def load_base(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) of a saved demo base model, in eval mode with frozen parameters."""
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no demo base model in {path} (missing config.json); build one with "
                                "`python -m expo_rl.demo.build_base` or `expo-rl demo --rebuild-base`")
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, tokenizer


def build_shipped_recipe(out_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """The shipped modular base model's recipe in one call: stage 1 (in a temporary directory)
    trains from scratch without the hard-level hinted traces (1500 updates, lr 1e-3, seed 0),
    stage 2 continues with them (250 updates, lr 5e-4, seed 1) into ``OUT``; ``OUT``'s metadata
    holds both stages'.

    Why two stages (measured, docs/notes/issue6-demo.md): one 1500-update build on the full corpus
    gave a base model with level-3 pass@1 62% (shipped: 90%) whose level-5 explanations were right
    in every step 30% of the time, and ExP-GRPO gained only 7.8 points of level-5 pass@8 with it.
    """
    with tempfile.TemporaryDirectory(prefix="expo-demo-base-stage1-") as scratch:
        stage1 = Path(scratch)
        build_base(ModularTask(hard_hints=False), stage1, steps=1500, batch=128, lr=1e-3, seed=0,
                   progress=progress)
        return build_base(ModularTask(), out_dir, steps=250, batch=128, lr=5e-4, seed=1, init=stage1,
                          progress=progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m expo_rl.demo.build_base", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="modular", help="built-in task name or path to a task .py file")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output directory (default for the modular task: {SHIPPED_DIR})")
    parser.add_argument("--steps", type=int, default=1500, help="SFT updates")
    parser.add_argument("--batch", type=int, default=128, help="examples per update")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (cosine schedule)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and corpus seed")
    parser.add_argument("--init", type=Path, default=None,
                        help="continue from this saved base model instead of a random initialisation")
    parser.add_argument("--shipped-recipe", action="store_true",
                        help="modular task only: the shipped base model's two-stage recipe "
                             "(build_shipped_recipe; ignores --steps/--lr/--seed/--init)")
    args = parser.parse_args(argv)
    task = load_task(args.task)
    out = args.out or (SHIPPED_DIR if args.task == "modular" else Path(f"base_model_{task.name}"))
    if args.shipped_recipe:
        if args.task != "modular":
            parser.error("--shipped-recipe is the recipe of the built-in modular task only")
        print(json.dumps(build_shipped_recipe(out), indent=2))
        return 0
    meta = build_base(task, out, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                      init=args.init)
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
