"""Command-line options shared by ``expo-rl explain`` and ``expo-rl diagnose``."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from expo_rl.expo.answer_format import ANSWER_FORMATS, TASKS
from expo_rl.expo.explanations import (
    LEAK_POLICIES,
    ON_MISMATCH,
    TEMPLATES,
    ExplainConfig,
    load_template,
)
from expo_rl.expo.hints import HINT_SOURCES, HintOptions
from expo_rl.expo.selection import load_selection, parse_levels
from expo_rl.policy.sampling import DRAWS
from expo_rl.ranges import UNIT, Range, arg_type, ge

COUNT = arg_type(int, ge(1))


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True,
        help="policy: 'tiny:qwen2', 'gemma3-270m', a local model/checkpoint dir, a .gguf file or a hub id",
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="parameter dtype (float32 on CPU)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--step", type=int, default=None,
                        help="training step of the checkpoint, recorded as the policy version "
                             "(read from the checkpoint's metadata when omitted and available)")


def add_selection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True,
                        help="data set: math_train, math500, gsm8k_train, gsm8k_test, a .jsonl path or hf:<id>[:split]")
    parser.add_argument("--split", default=None, help="split for data sets that have several")
    parser.add_argument("--data-dir", default=None, help="folder searched first for the named data sets (default: $EXPO_RL_DATA, then the packaged copy)")
    parser.add_argument("--levels", default=None,
                        help="keep only these MATH levels, e.g. '1,2,3' or '1-3' (problems without a level are dropped)")
    parser.add_argument("--limit", type=COUNT, default=None, help="use at most this many questions")
    parser.add_argument("--shuffle-seed", type=int, default=None,
                        help="shuffle the questions with this seed before --limit (default: file order)")


def add_explain_args(parser: argparse.ArgumentParser, *, temperature: float, max_new_tokens: int) -> None:
    parser.add_argument("--hint", default="answer", choices=sorted(HINT_SOURCES),
                        help="hint source: 'answer' (the paper) or 'answer_plus_expert_prefix' (answer + first k of the expert solution)")
    parser.add_argument("--hint-fraction", type=arg_type(float, UNIT), default=0.5,
                        help="share of the expert solution's words for answer_plus_expert_prefix (0-1)")
    parser.add_argument("--task", default="auto", choices=["auto", *TASKS],
                        help="task whose templates and answer format to use (auto: from each problem's data set)")
    parser.add_argument("--template", default=None,
                        help=f"JSON/YAML file with 'instruction' [and 'hinted_question' with {{question}}, {{hint}}] "
                             f"replacing the built-in explanation templates (tasks: {', '.join(TEMPLATES)})")
    parser.add_argument("--answer-format", default=None, choices=sorted(ANSWER_FORMATS),
                        help="how a* is written after the explanation (default: the task's, boxed)")
    parser.add_argument("--on-mismatch", default="drop", choices=list(ON_MISMATCH),
                        help="explanations whose final answer contradicts a*: drop them or repair (replace the answer by a*)")
    parser.add_argument("--leak-policy", default="strip", choices=list(LEAK_POLICIES),
                        help="sentences saying the answer was given: strip them, keep them (counted), or drop the explanation")
    parser.add_argument("--temperature", type=arg_type(float, ge(0, "0 = greedy")), default=temperature,
                        help="sampling temperature")
    parser.add_argument("--top-p", type=arg_type(float, Range(0.0, 1.0, lo_open=True)), default=1.0,
                        help="nucleus sampling threshold")
    parser.add_argument("--max-new-tokens", type=COUNT, default=max_new_tokens, help="generation length cap")
    parser.add_argument("--batch-size", type=COUNT, default=8, help="sequences per generation forward pass")
    parser.add_argument("--draw", default="multinomial", choices=DRAWS,
                        help="how tokens are drawn: torch.multinomial, or inverse CDF (same distribution, "
                             "~5x cheaper with a 262k vocabulary on CPU; other random stream)")
    parser.add_argument("--questions-per-call", type=COUNT, default=2,
                        help="questions generated together (results are written after each group)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (group i uses seed + i)")


def explain_config_from_args(args: argparse.Namespace) -> ExplainConfig:
    templates = None
    if args.template:
        template = load_template(args.template)
        templates = {task: template for task in TEMPLATES}
    return ExplainConfig(
        hint=args.hint,
        hint_options=HintOptions(fraction=args.hint_fraction),
        task=args.task,
        templates=templates,
        answer_format=args.answer_format,
        on_mismatch=args.on_mismatch,
        leak_policy=args.leak_policy,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        draw=args.draw,
    )


def problems_from_args(args: argparse.Namespace):
    return load_selection(
        args.data,
        split=args.split,
        data_dir=args.data_dir,
        levels=parse_levels(args.levels),
        limit=args.limit,
        shuffle_seed=args.shuffle_seed,
    )


def checkpoint_step(model_spec: str) -> int | None:
    """The training step of a checkpoint directory (``.../step-000012[/policy]``), when known."""
    directory = Path(model_spec)
    if not directory.is_dir():
        return None
    for folder in (directory, directory.parent):
        path = folder / "trainer_state.json"
        if path.exists():
            try:
                data: Any = json.loads(path.read_text())
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and isinstance(data.get("step"), int):
                return data["step"]
        match = re.fullmatch(r"step-(\d+)", folder.name)
        if match:
            return int(match.group(1))
    return None


def load_model(args: argparse.Namespace):
    """``(model, tokenizer, policy_version)`` for ``--model``."""
    # torch and transformers: imported when a command runs, not when `expo-rl` builds its parser
    import torch

    from expo_rl.expo.explanations import policy_version
    from expo_rl.policy import load_policy

    model, tokenizer = load_policy(args.model, dtype=getattr(torch, args.dtype), device=args.device)
    model.eval()
    step = args.step if args.step is not None else checkpoint_step(args.model)
    return model, tokenizer, policy_version(model, args.model, step)
