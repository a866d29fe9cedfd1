"""``expo-rl merge RUN_DIR --out DIR``: a run's policy as one plain Hugging Face model directory.

For a LoRA run (``model.lora.r > 0``) the checkpoint's ``policy/`` holds only the adapter; this
loads the base model named in the run's config (``model.policy``), merges the adapter
(``W + (alpha / r) B A``) and writes the result with the tokenizer. For a full fine-tune the
checkpoint's policy is written as is. RUN_DIR is a run's ``train.output_dir`` (its newest
complete checkpoint is used) or one checkpoint directory (``.../checkpoints/step-000010``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("merge", help="write a run's policy (LoRA adapter merged) as a Hugging Face model",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run's output_dir or one of its checkpoint directories")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write the merged model to")
    parser.add_argument("--base", default=None, metavar="SPEC",
                        help="base model spec (default: model.policy of the run's config)")
    parser.set_defaults(run=run)


def find_checkpoint(run_dir: Path) -> Path | None:
    """``run_dir`` itself when it is a complete checkpoint, else its newest complete checkpoint."""
    from expo_rl.engine import checkpoint

    if (run_dir / checkpoint.MARKER).is_file():
        return run_dir
    return checkpoint.find_latest_checkpoint(run_dir / "checkpoints")


def run(args: argparse.Namespace) -> int:
    from expo_rl.engine.checkpoint import STATE_FILE
    from expo_rl.engine.lora_policy import merge_checkpoint

    run_dir = Path(args.run_dir)
    found = find_checkpoint(run_dir)
    if found is None:
        print(f"expo-rl merge: no complete checkpoint in {run_dir} (nor {run_dir / 'checkpoints'})", file=sys.stderr)
        return 2
    base = args.base
    if base is None:
        state = json.loads((found / STATE_FILE).read_text())
        base = state.get("config", {}).get("model", {}).get("policy")
        if not base:
            print(f"expo-rl merge: {found / STATE_FILE} names no model.policy; pass --base", file=sys.stderr)
            return 2
    out = merge_checkpoint(found / "policy", base, args.out)
    print(f"merged {found / 'policy'} onto {base}: {out}")
    return 0
