"""The benchmark's workloads and the hyper-parameters both sides share.

Four (method, workload) cells, each run on both model sizes:

* GRPO uniform (the peer's best case): 8 prompts x 8 samples per step, exactly 64 new tokens
  (the model's EOS bias is -30, so it never stops), prompts of exactly 16 tokens; KL on (beta 0.04).
* GRPO realistic: prompts are MATH training questions (chat template + the library's
  "think step by step" instruction; questions whose prompt exceeds ``MAX_PROMPT_TOKENS`` are
  skipped), completions end at EOS with geometric lengths of mean ``REALISTIC_MEAN_LENGTH``
  (model EOS bias, see ``models.py``), capped at 256 new tokens.
* DPO uniform: 64 pairs per step, 16-token prompts, chosen and rejected of exactly 64 tokens
  (63 word tokens + EOS).
* DPO realistic: 64 pairs per step; prompt = a MATH question, chosen = its solution, rejected =
  the solution of another random question, each truncated at 511 tokens (+ EOS = at most 512).

Both sides read the same files in the same order (no shuffling: the files are shuffled once
with a fixed seed when written), so step k of both sides sees the same prompts / pairs.
Prompts are the library's ``build_prompt`` strings; TRL gets them as plain-text prompts and
tokenises them itself, and ``check_tokenisation`` verifies that both sides see the same ids.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MATH_TRAIN = Path("/work/shared/data/math/train.jsonl")
METHODS = ("grpo", "dpo")
WORKLOADS = ("uniform", "realistic")
MAX_PROMPT_TOKENS = 320          # ~95th percentile of MATH train prompts with this tokenizer
MAX_RESPONSE_TOKENS = 512        # DPO realistic: solutions truncated to 511 tokens + EOS
REALISTIC_MEAN_LENGTH = 72.0     # GRPO realistic: mean completion length before the 256 cap
UNIFORM_PROMPT_TOKENS = 16
UNIFORM_RESPONSE_TOKENS = 64


@dataclass(frozen=True)
class HParams:
    """Identical on both sides (TRL argument names in comments)."""

    lr: float = 1e-6                 # learning_rate; constant schedule, no warm-up
    max_grad_norm: float = 1.0       # max_grad_norm
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    seed: int = 0
    grpo_beta: float = 0.04          # beta (k3 KL to the reference)
    grpo_clip: float = 0.2           # epsilon
    mu: int = 1                      # num_iterations
    temperature: float = 1.0
    top_p: float = 1.0
    dpo_beta: float = 0.1            # beta, sigmoid loss on the summed log-ratio
    micro_batch_rows: int = 16       # sequences per forward/backward (DPO: 8 pairs)


@dataclass(frozen=True)
class Workload:
    method: str
    name: str
    questions_per_step: int = 8      # GRPO
    group_size: int = 8              # GRPO
    max_new_tokens: int = 64         # GRPO
    eos_logit_bias: float = 0.0      # the model's (models.py)
    pairs_per_step: int = 64         # DPO

    @property
    def rows_per_step(self) -> int:
        return self.questions_per_step * self.group_size if self.method == "grpo" else 2 * self.pairs_per_step

    def micro_batches(self, hp: HParams) -> int:
        if self.rows_per_step % hp.micro_batch_rows:
            raise ValueError(f"{self.rows_per_step} rows per step do not split into micro-batches of "
                             f"{hp.micro_batch_rows} rows")
        return self.rows_per_step // hp.micro_batch_rows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_workload(method: str, name: str, *, pairs_per_step: int = 64) -> Workload:
    from models import NEVER_STOP_BIAS, realistic_eos_bias

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; allowed: {', '.join(WORKLOADS)}")
    if method == "dpo":
        return Workload("dpo", name, pairs_per_step=pairs_per_step)
    if name == "uniform":
        return Workload("grpo", name, max_new_tokens=UNIFORM_RESPONSE_TOKENS, eos_logit_bias=NEVER_STOP_BIAS)
    return Workload("grpo", name, max_new_tokens=256, eos_logit_bias=realistic_eos_bias(REALISTIC_MEAN_LENGTH))


# ---------------------------------------------------------------------------------------------
# the shared reward (cheap, deterministic, varied within a group so advantages are non-zero)


def reward(completion: str, reference: str = "", **_: Any) -> float:
    """expo-rl signature: a pseudo-random score in [0, 1] from the completion's characters."""
    return (sum(map(ord, completion)) % 11) / 10.0


def trl_reward(prompts: list[Any], completions: list[str], **_: Any) -> list[float]:
    """TRL signature, same values."""
    return [reward(c) for c in completions]


# ---------------------------------------------------------------------------------------------
# data files


def prompt_text(tokenizer: Any, question: str, workload: str) -> str:
    """The prompt string both sides use: the library's ``build_prompt`` (its default "think step
    by step" instruction on the realistic workload, none on the uniform one)."""
    from expo_rl.policy import build_prompt

    if workload == "uniform":
        return build_prompt(tokenizer, question, instruction="")
    return build_prompt(tokenizer, question)


def _word_tokens(tokenizer: Any) -> list[str]:
    """Vocabulary entries that decode to a space + 2-8 ASCII letters (they re-tokenise as themselves)."""
    words = []
    for token_id in range(tokenizer.vocab_size):
        text = tokenizer.decode([token_id])
        body = text[1:]
        if text.startswith(" ") and body.isascii() and body.isalpha() and 2 <= len(body) <= 8:
            if tokenizer(text, add_special_tokens=False)["input_ids"] == [token_id]:
                words.append(text)
    return words


def random_text(tokenizer: Any, rng: random.Random, words: list[str], n_tokens: int) -> str:
    """A string of random words that tokenises to exactly ``n_tokens`` tokens."""
    for _ in range(1000):
        text = "".join(rng.choice(words) for _ in range(n_tokens)).lstrip()
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) == n_tokens:
            return text
    raise RuntimeError(f"could not build a {n_tokens}-token random text")


def random_question(tokenizer: Any, rng: random.Random, words: list[str], prompt_tokens: int) -> str:
    """A random-word question whose uniform-workload prompt is exactly ``prompt_tokens`` tokens."""
    from expo_rl.policy import encode_prompt

    overhead = len(encode_prompt(tokenizer, prompt_text(tokenizer, "x", "uniform"))) - 1
    for _ in range(1000):
        question = random_text(tokenizer, rng, words, prompt_tokens - overhead)
        if len(encode_prompt(tokenizer, prompt_text(tokenizer, question, "uniform"))) == prompt_tokens:
            return question
    raise RuntimeError("could not build a fixed-length random question")


def truncate_tokens(tokenizer: Any, text: str, max_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def math_rows(tokenizer: Any, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` MATH train rows in a seeded random order, prompts at most ``MAX_PROMPT_TOKENS``."""
    from expo_rl.policy import encode_prompt

    with MATH_TRAIN.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    rng.shuffle(rows)
    kept = []
    for row in rows:
        if len(encode_prompt(tokenizer, prompt_text(tokenizer, row["problem"], "realistic"))) <= MAX_PROMPT_TOKENS:
            kept.append(row)
            if len(kept) == count:
                return kept
    raise RuntimeError(f"{MATH_TRAIN} has fewer than {count} usable questions")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    tmp.replace(path)
    return path


def build_data(workload: Workload, steps: int, root: Path, tokenizer: Any, *, seed: int = 0) -> dict[str, str]:
    """Write the workload's files for ``steps`` training steps; returns their paths.

    ``problems``: MATH-format JSONL (``problem``, ``solution``, ``answer``), read by expo-rl's
    loader (GRPO prompts; for DPO only to satisfy the config). ``pairs`` (DPO):
    ``{question, chosen, rejected}`` JSONL, the library's ``preference_pairs`` file format.
    """
    rng = random.Random(seed)
    units = steps * (workload.questions_per_step if workload.method == "grpo" else workload.pairs_per_step)
    folder = root / f"{workload.method}-{workload.name}-{units}"
    files = {"problems": str(folder / "problems.jsonl")}
    if workload.method == "dpo":
        files["pairs"] = str(folder / "pairs.jsonl")
    if all(Path(f).is_file() for f in files.values()):
        return files
    if workload.name == "uniform":
        words = _word_tokens(tokenizer)
        questions = [random_question(tokenizer, rng, words, UNIFORM_PROMPT_TOKENS) for _ in range(units)]
        problems = [{"unique_id": f"uniform/{i}", "problem": q, "solution": "", "answer": "0"}
                    for i, q in enumerate(questions)]
        if workload.method == "dpo":
            pairs = [{"question": q,
                      "chosen": random_text(tokenizer, rng, words, UNIFORM_RESPONSE_TOKENS - 1),
                      "rejected": random_text(tokenizer, rng, words, UNIFORM_RESPONSE_TOKENS - 1)}
                     for q in questions]
    else:
        rows = math_rows(tokenizer, units, rng)
        problems = [{"unique_id": r.get("unique_id", str(i)), "problem": r["problem"],
                     "solution": r["solution"], "answer": r.get("answer", "")} for i, r in enumerate(rows)]
        if workload.method == "dpo":
            others = rows[1:] + rows[:1]  # rejected: another question's solution
            pairs = [{"question": r["problem"],
                      "chosen": truncate_tokens(tokenizer, r["solution"], MAX_RESPONSE_TOKENS - 1),
                      "rejected": truncate_tokens(tokenizer, o["solution"], MAX_RESPONSE_TOKENS - 1)}
                     for r, o in zip(rows, others)]
    write_jsonl(Path(files["problems"]), problems)
    if workload.method == "dpo":
        write_jsonl(Path(files["pairs"]), pairs)
    return files


def read_jsonl(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def check_tokenisation(tokenizer: Any, workload: Workload, files: dict[str, str]) -> dict[str, int]:
    """Compare expo-rl's token ids with TRL's for every row; returns counts of rows that differ.

    expo-rl: prompt = ``encode_prompt(prompt)``; DPO completion = ``ids(text) + [eos]``.
    TRL: GRPO prompt = ``tokenizer(prompt)``; DPO = ``ids(prompt + text + eos_token)`` split at
    the common prefix with ``ids(prompt)``.
    """
    from expo_rl.policy import encode_prompt

    differ = {"prompts": 0, "completions": 0, "rows": 0}
    if workload.method == "grpo":
        for row in read_jsonl(files["problems"]):
            prompt = prompt_text(tokenizer, row["problem"], workload.name)
            differ["rows"] += 1
            differ["prompts"] += encode_prompt(tokenizer, prompt) != tokenizer(text=prompt)["input_ids"]
        return differ
    for row in read_jsonl(files["pairs"]):
        prompt = prompt_text(tokenizer, row["question"], workload.name)
        ours_prompt = encode_prompt(tokenizer, prompt)
        trl_prompt = tokenizer(prompt)["input_ids"]
        differ["prompts"] += ours_prompt != trl_prompt
        for text in (row["chosen"], row["rejected"]):
            differ["rows"] += 1
            ours = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            full = tokenizer(prompt + text + tokenizer.eos_token)["input_ids"]
            common = 0
            while common < min(len(full), len(trl_prompt)) and full[common] == trl_prompt[common]:
                common += 1
            differ["completions"] += full[common:] != ours or common != len(ours_prompt)
    return differ
