"""Config -> parts: problems, rewards, the frozen initial policy, and one (source, reward,
coefficient, weight) per loss term. The only place where configuration is read; everything it builds takes
plain values.

This module and ``runtime.py`` sit at the recipe layer (they import ``expo_rl.sources``), above
the engine's step/optimiser/checkpoint modules.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object

from expo_rl.data import Problem, load_problems
from expo_rl.engine.config import RunConfig, TermConfig
from expo_rl.engine.typed_config import ConfigError, from_dict
from expo_rl.policy import build_prompt, sample
from expo_rl.sources import Row, Source, SourceEnv, get_source
from expo_rl.verify import REWARDS, batch_rewards, get_reward


def reward_names() -> list[str]:
    """Names accepted by ``terms.N.reward`` besides 'module:function'."""
    return sorted(REWARDS)


def resolve_reward(name: str | None) -> Callable[..., float] | None:
    """A registry name, or ``'package.module:function'`` for a user callable."""
    if name is None:
        return None
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"reward {name!r}: cannot import {attr} from {module} ({error})") from None
    return get_reward(name)


def load_problem_set(config: RunConfig) -> list[Problem]:
    """The run's questions: loader -> level filter -> limit (in file order; sources shuffle)."""
    data = config.data
    problems = load_problems(data.name, data.split, data_dir=data.data_dir, levels=data.levels,
                             limit=data.limit).problems
    if not problems:
        raise ConfigError(f"config key 'data': no problems left from {data.name!r} "
                          f"(levels={data.levels}, limit={data.limit})")
    return problems


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off everywhere: otherwise the old, reference and current log-probs of the same
    tokens would differ by noise and ratios would not be 1 at the first inner update."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


@dataclass
class Term:
    """One loss term, built: its config, source and reward function."""

    config: TermConfig
    source: Source
    reward: Callable[..., float] | None
    env: SourceEnv

    @property
    def name(self) -> str:
        return self.config.label


class FrozenPolicy:
    """The frozen initial policy: pi_ref, and the sampler of once-sampled sources (RFT, offline
    preference pairs, offline self-explanations).

    It is loaded again from the run's model spec rather than copied: ``load_policy`` is
    deterministic (the same files, or the same seeded tiny init), so the second load *is* the
    initial policy even when first asked for at step 50, and nothing is held in memory when no
    term and no source needs it. It is loaded at set-up when it serves as the reference.
    """

    def __init__(self, load: Callable[[], torch.nn.Module], device: torch.device, *, eager: bool) -> None:
        self._load, self._device = load, device
        self.model: torch.nn.Module | None = None
        if eager:
            self()

    def __call__(self) -> torch.nn.Module:
        if self.model is None:
            model = self._load()
            disable_dropout(model)
            self.model = model.to(self._device).eval().requires_grad_(False)
        return self.model

    @contextmanager
    def reference(self) -> Iterator[torch.nn.Module]:
        """pi_ref for the duration of a ``with`` block (a LoRA run's reference disables adapters
        instead: ``expo_rl.engine.lora_policy.BaseModelReference``)."""
        yield self()


def build_terms(config: RunConfig, problems: list[Problem], *, tokenizer: Any,
                frozen: FrozenPolicy, accelerator: Any, output_dir: Path, rollout: Any = None) -> list[Term]:
    """One :class:`Term` per ``config.terms`` entry, each with its own :class:`SourceEnv`.

    ``rollout``: a rollout engine (``expo_rl.rollout``) that samples the current policy; None
    (``sampling.engine: hf``) samples with the built-in decode loop. The frozen policy is always
    sampled with the built-in loop (its samples are drawn once and cached)."""
    s = config.sampling
    prompt_kwargs = {} if config.data.instruction is None else {"instruction": config.data.instruction}

    def prompt(question: str) -> str:
        return build_prompt(tokenizer, question, **prompt_kwargs)

    def sample_fn(model: Any, prompts: list[str], *, n: int, seed: int) -> Any:
        if rollout is not None and model is not frozen.model:
            return rollout.sample(model, prompts, n=n, seed=seed)
        was_training = model.training
        model.eval()
        try:
            # autocast too for the frozen copy, which accelerate did not prepare
            with torch.no_grad(), accelerator.autocast():
                return sample(model, tokenizer, prompts, n=n, temperature=s.temperature, top_p=s.top_p,
                              max_new_tokens=s.max_new_tokens, seed=seed, batch_size=s.batch_size, draw=s.draw)
        finally:
            model.train(was_training)

    def gather(objs: list[Any]) -> list[Any]:
        return gather_object(objs) if accelerator.num_processes > 1 else list(objs)

    terms = []
    for i, term_config in enumerate(config.terms):
        reward = resolve_reward(term_config.reward)

        def score(rows: list[Row], reward: Callable | None = reward) -> None:
            todo = [r for r in rows if r.reward is None]
            if reward is None or not todo:
                return
            values = batch_rewards(reward, [r.completion for r in todo], [r.reference for r in todo],
                                   [r.fields for r in todo])
            for row, value in zip(todo, values):
                row.reward = float(value)

        env = SourceEnv(
            name=term_config.label, tokenizer=tokenizer, prompt=prompt, sample=sample_fn,
            frozen_policy=frozen, score=score, gather=gather, rank=accelerator.process_index,
            world_size=accelerator.num_processes, seed=config.train.seed,
            cache_dir=str(output_dir / "cache"), show_progress=config.train.progress,
        )
        spec = get_source(term_config.source)
        options = from_dict(spec.options, term_config.source_args, f"terms.{i}.source_args")
        terms.append(Term(term_config, spec.build(problems, options, env), reward, env))
    return terms
