"""``frozen_samples``: outputs sampled once from a frozen model, scored and cached (RFT, SPEC 2.2).

At start-up every question gets ``samples_per_question`` outputs from the frozen initial policy
(the same frozen copy that serves as the reference model), scored with the term's reward. The
samples are appended to a JSONL cache (``<output_dir>/cache/<term>.jsonl`` unless ``cache`` names
a file), so a resumed run, or a second run pointed at the same file, reuses them instead of
sampling again. Questions are split over processes for sampling and the results gathered, so
every process holds the same list. Training then walks that list like a fixed SFT data set;
the RFT coefficient 1{o correct} gives incorrect outputs no weight (``keep: correct`` drops them
up front instead, which also removes them from the per-sequence normaliser).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from expo_rl.data.appendlog import append_records
from expo_rl.data.jsonl import read_json_lines
from expo_rl.data.records import Problem
from expo_rl.sources.base import (
    Row,
    SourceEnv,
    StepContext,
    local_share,
    register_source,
    rows_from_samples,
    step_seed,
)
from expo_rl.sources.cache_key import KEY_FIELD, problem_keys, warn_stale
from expo_rl.sources.cursor import Cursor, CursorState


def cache_path(option: str | None, env: SourceEnv) -> Path | None:
    if option:
        return Path(option)
    return Path(env.cache_dir) / f"{env.name}.jsonl" if env.cache_dir else None


def _read_cache(path: Path | None, keys: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Cached records per problem id whose ``cache_key`` is the one ``keys`` expects (a torn last
    line is skipped; records of other settings are counted and left unused)."""
    cached: dict[str, list[dict[str, Any]]] = {}
    if path is None:
        return cached
    stale = 0
    # a torn last line from an interrupted append is skipped: everything before it is usable
    for _, record in read_json_lines(path, missing_ok=True, bad="warn"):
        key = record.pop(KEY_FIELD, None)
        problem_id = record.get("problem_id")
        if problem_id not in keys:
            continue
        if key != keys[problem_id]:
            stale += 1
            continue
        cached.setdefault(problem_id, []).append(record)
    warn_stale(path, stale, "samples")
    return cached


def sample_once(problems: list[Problem], n: int, env: SourceEnv, path: Path | None, *,
                questions_per_call: int = 8) -> list[list[Row]]:
    """``n`` scored rows per problem from the frozen policy, read from / added to the cache."""
    keys = problem_keys(env.cache_context, problems)
    cached = _read_cache(path, keys)
    missing = [i for i, p in enumerate(problems) if len(cached.get(p.id, [])) < n]
    mine = missing[env.rank::env.world_size]
    records: list[dict[str, Any]] = []
    chunks = range(0, len(mine), questions_per_call)
    bar = tqdm(chunks, desc=f"{env.name}: sampling from the frozen policy", unit="call",
               disable=not (env.show_progress and env.rank == 0) or not mine)
    for call, start in enumerate(bar):
        chunk = [problems[i] for i in mine[start:start + questions_per_call]]
        batch = env.sample(env.frozen_policy(), [env.prompt(p) for p in chunk], n=n,
                           seed=step_seed(env.seed, 0, env.rank, salt=call + 1))
        rows = rows_from_samples(batch, chunk)
        env.score(rows)
        records.extend(asdict(row) for row in rows)
    records = env.gather(records)
    if path is not None and env.rank == 0 and records:
        append_records(path, ({**r, KEY_FIELD: keys[r["problem_id"]]} for r in records))
    for record in records:
        cached.setdefault(record["problem_id"], []).append(record)
    return [[Row(**r) for r in cached.get(p.id, [])[:n]] for p in problems]


@dataclass
class FrozenSamplesOptions:
    samples_per_question: int = field(default=4, metadata={"help": "outputs sampled once per question"})
    rows_per_step: int = field(default=8, metadata={"help": "sampled rows per training step, over all processes"})
    keep: Literal["all", "correct"] = field(default="all", metadata={"help": "train on all samples (GC = 1{correct}) or only the correct ones"})
    cache: str | None = field(default=None, metadata={"help": "JSONL cache of the samples (default <output_dir>/cache/<term>.jsonl)"})
    questions_per_call: int = field(default=8, metadata={"help": "questions per generation call"})
    shuffle: bool = field(default=True, metadata={"help": "reshuffle the rows every epoch"})


class FrozenSamples(CursorState):
    def __init__(self, problems: list[Problem], options: FrozenSamplesOptions, env: SourceEnv):
        self.problems, self.options, self.env = problems, options, env
        self.rows: list[Row] = []
        self.cursor: Cursor | None = None

    def prepare(self, env: SourceEnv) -> None:
        per_problem = sample_once(self.problems, self.options.samples_per_question, env,
                                  cache_path(self.options.cache, env),
                                  questions_per_call=self.options.questions_per_call)
        rows = [row for group in per_problem for row in group]
        if self.options.keep == "correct":
            rows = [row for row in rows if (row.reward or 0.0) > 0]
        if not rows:
            raise ValueError(f"{env.name}: no usable frozen-model samples (keep={self.options.keep})")
        self.rows = rows
        self.cursor = Cursor(len(rows), seed=env.seed, shuffle=self.options.shuffle)

    def next_rows(self, ctx: StepContext) -> list[Row]:
        if self.cursor is None:
            raise RuntimeError("frozen_samples: prepare() must run before next_rows()")
        picked = local_share(self.cursor.take(self.options.rows_per_step), self.env)
        rows = [Row(**asdict(self.rows[i])) for i in picked]
        groups: dict[str, int] = {}
        for row in rows:  # outputs of the same question drawn in this step form a group
            row.group = groups.setdefault(row.problem_id, len(groups))
        return rows


@register_source("frozen_samples", FrozenSamplesOptions)
def build_frozen_samples(problems: list[Problem], options: FrozenSamplesOptions,
                         env: SourceEnv) -> FrozenSamples:
    """Outputs sampled once from the frozen initial policy, scored and cached (RFT)."""
    return FrozenSamples(problems, options, env)
