"""A bank of self-explanations per question, regenerated on a schedule (offline vs online ExPO).

SPEC 3.4/3.5: *offline* explanations come once from the initial policy (ExP-GRPO as in the
paper, offline ExP-DPO); *online* ones are regenerated from the current policy after every
``every`` training steps (online ExP-DPO; the online ExP-GRPO variant).

The schedule is one pure function: step ``s`` (1-based) uses the explanations of generation
``refresh_generation(s, every)``; ``every = 0`` means offline (generation 0 for ever). A question's
explanations are (re)generated when it is drawn and the bank holds none of the current
generation, so with all questions drawn every step, generation happens exactly at steps
``1, 1 + every, 1 + 2*every, ...`` (online) or only at step 1 (offline). Generating lazily, when
a question is first drawn in a generation, samples from the same policy as generating every
question up front, but only spends time on the questions a run actually uses.

Offline explanations are sampled from the frozen initial policy and cached in a JSONL file
(``expo_rl.expo.explanations`` records, each naming the policy version), so a resumed run or a
second run with the same cache reuses them; ``expo-rl explain`` writes the same format, so a
cache can be generated beforehand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expo_rl.data.records import Problem
from expo_rl.expo.explanations import (
    ExplainConfig,
    Explanation,
    acceptance_stats,
    append_explanations,
    generate_explanations,
    policy_fingerprint,
    read_explanations,
)
from expo_rl.policy.logprobs import unwrap


def refresh_generation(step: int, every: int) -> int:
    """The explanation generation step ``step`` (1-based) trains on: 0 offline, ``(step-1)//every`` online."""
    if step < 1:
        raise ValueError(f"training steps are 1-based, got {step}")
    if every < 0:
        raise ValueError(f"refresh_every must be >= 0 (0 = offline), got {every}")
    return 0 if every == 0 else (step - 1) // every


def regenerates_at(step: int, every: int) -> bool:
    """True when step ``step`` starts a new generation (step 1 always: the first one)."""
    return step == 1 or (every > 0 and refresh_generation(step, every) != refresh_generation(step - 1, every))


@dataclass
class ExplanationBank:
    """Usable explanations per question id, tagged with the generation that produced them.

    ``generate(model, problems, seed) -> list[Explanation]`` does the sampling and judging;
    ``per_question`` explanations are generated per question each time.
    """

    config: ExplainConfig
    per_question: int
    every: int
    generate: Callable[[Any, Sequence[Problem], int], list[Explanation]]
    cache: Path | None = None
    entries: dict[str, list[Explanation]] = field(default_factory=dict)
    generation_of: dict[str, int] = field(default_factory=dict)
    generation_steps: list[int] = field(default_factory=list)
    recent: list[Explanation] = field(default_factory=list)

    def load_cache(self) -> int:
        """Fill the bank from the cache file (offline only: online ones belong to a past policy)."""
        if self.cache is None or self.every != 0:
            return 0
        loaded = 0
        for explanation in read_explanations(self.cache):
            if explanation.hint_source != self.config.hint:
                continue
            self.entries.setdefault(explanation.id, []).append(explanation)
            self.generation_of[explanation.id] = 0
            loaded += 1
        return loaded

    def get(self, problems: Sequence[Problem], step: int, policy: Any, *, seed: int) -> dict[str, list[Explanation]]:
        """Explanations for ``problems`` at ``step``, generating the missing or stale ones with ``policy``."""
        generation = refresh_generation(step, self.every)
        stale = [p for p in problems if self.generation_of.get(p.id) != generation]
        if stale:
            version = {"step": step - 1, "generation": generation, "hash": policy_fingerprint(unwrap(policy))}
            made = self.generate(policy, stale, seed)
            for explanation in made:
                explanation.policy = {**explanation.policy, **version}
            for problem in stale:
                self.entries[problem.id] = []
                self.generation_of[problem.id] = generation
            for explanation in made:
                self.entries.setdefault(explanation.id, []).append(explanation)
            self.generation_steps.append(step)
            self.recent.extend(made)
            if self.cache is not None and made:
                append_explanations(self.cache, made)
        return {p.id: self.entries.get(p.id, []) for p in problems}

    def usable(self, problem_id: str) -> list[Explanation]:
        return [e for e in self.entries.get(problem_id, []) if e.usable]

    def pop_stats(self) -> dict[str, float]:
        """Acceptance statistics of the explanations generated since the last call."""
        stats = acceptance_stats(self.recent) if self.recent else {}
        self.recent = []
        return stats


def bank_generator(
    tokenizer: Any,
    config: ExplainConfig,
    per_question: int,
    sampler: Callable[..., Any] | None,
    *,
    questions_per_call: int = 8,
) -> Callable[[Any, Sequence[Problem], int], list[Explanation]]:
    """``generate(model, problems, seed)`` for an ``ExplanationBank`` (chunks of questions)."""

    def generate(model: Any, problems: Sequence[Problem], seed: int) -> list[Explanation]:
        out: list[Explanation] = []
        for call, start in enumerate(range(0, len(problems), questions_per_call)):
            chunk = problems[start : start + questions_per_call]
            out.extend(
                generate_explanations(
                    unwrap(model), tokenizer, chunk, config, n=per_question, seed=seed + call, sampler=sampler
                )
            )
        return out

    return generate
