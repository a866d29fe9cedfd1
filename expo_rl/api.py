"""The object-level API: train a model you hold, on problems and reward functions written in
Python, the way a TRL user calls ``GRPOTrainer(model=..., reward_funcs=..., train_dataset=...)``::

    from expo_rl import Problem, Term, load_policy, train

    def reward(completion: str, reference: str, **fields) -> float:   # reference = the answer a*
        return float(completion.strip().endswith(reference))

    model, tokenizer = load_policy("tiny:qwen2")
    train(model=model, tokenizer=tokenizer,
          problems=[Problem(id="p1", question="2 + 3 = ?", answer="5")],
          terms=[Term(source="on_policy", coefficient="grpo", reward=reward,
                      source_args={"questions_per_step": 1, "group_size": 4})],
          config={"train": {"steps": 2, "output_dir": "runs/api"}})

``expo-rl train CONFIG`` is the same call with the objects loaded from the config
(:func:`expo_rl.engine.recipe.load_parts`): both end in :func:`expo_rl.engine.runtime.train`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from expo_rl.data.records import Problem
from expo_rl.engine.config import RunConfig, TermConfig, validate
from expo_rl.engine.recipe import Parts, ProblemSet, group_by_level
from expo_rl.engine.runtime import train as run_training
from expo_rl.engine.typed_config import ConfigError, from_dict

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

Term = TermConfig
"""One loss term: ``Term(source, coefficient, reward=..., weight=1.0, source_args={...},
coefficient_args={...}, name=None)``, the ``terms:`` entry of a YAML config; ``reward`` may be
a callable ``fn(completion, reference, **row_fields) -> float`` (``reference`` is the answer a*)."""


def train(*, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, problems: Sequence[Problem],
          terms: Sequence[Term | Mapping[str, Any]] | None = None,
          config: RunConfig | Mapping[str, Any] | None = None, held_out: Sequence[Problem] = (),
          initial_policy: Callable[[], torch.nn.Module] | None = None,
          resume: bool = False) -> dict[str, Any]:
    """Train ``model`` on ``problems`` with ``terms``; returns the run summary (``steps``,
    ``metrics``: the metrics.jsonl path, ``checkpoint``).

    ``config``: every other setting (``train``, ``optim``, ``sampling``, ``eval``), a
    :class:`RunConfig` or the same nested mapping a YAML file holds, validated the same way;
    its ``model`` and ``data`` sections are not used (the objects replace them). ``terms``
    replaces ``config.terms``. ``held_out``: evaluation questions for ``eval.every`` /
    ``eval.final_n``. ``initial_policy``: loads the initial policy (pi_ref, and the sampler of
    once-sampled sources); by default a copy of ``model`` taken now, before any update.
    """
    run_config = config if isinstance(config, RunConfig) else from_dict(RunConfig, dict(config or {}))
    if terms is not None:
        terms = [from_dict(TermConfig, _as_mapping(term), f"terms.{i}") for i, term in enumerate(terms)]
        run_config = dataclasses.replace(run_config, terms=terms)
    name = getattr(model, "name_or_path", "") or type(model).__name__  # for the saved config only
    model_config = dataclasses.replace(run_config.model, policy=f"object:{name}")
    run_config = dataclasses.replace(run_config, model=model_config)
    validate(run_config, held_out_given=bool(held_out))
    if not problems:
        raise ConfigError("train(problems=...): at least one Problem is required")
    if initial_policy is None:
        snapshot = copy.deepcopy(model)
        initial_policy = lambda: copy.deepcopy(snapshot)  # noqa: E731
    problem_set = ProblemSet(list(problems), group_by_level(list(held_out)))
    return run_training(run_config, resume=resume, parts=Parts(model, tokenizer, problem_set, initial_policy))


def _as_mapping(term: Term | Mapping[str, Any]) -> Mapping[str, Any]:
    """A term's fields, so a built ``Term`` is type-checked like a YAML entry."""
    if isinstance(term, TermConfig):
        return {f.name: getattr(term, f.name) for f in dataclasses.fields(term)}
    return term
