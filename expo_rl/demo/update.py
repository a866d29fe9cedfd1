"""One optimiser update of the demo through the library's shared training step.

Every method of the demo (the base model's SFT, GRPO, GRPO + SFT on expert solutions, ExP-GRPO,
DPO and ExP-DPO) is a list of loss terms (``expo_rl.engine.step.StepTerm``: a registered
gradient coefficient, its hyper-parameters and a weight) plus the rows each term gets. This
module packs those rows with the engine's batching, fills the reference log-probs, computes the
normalisers over the whole batch and runs ``expo_rl.engine.step.training_step``: the same code
``expo-rl train`` runs, so the demo measures the library, not a private trainer.

ExP-GRPO (SPEC 3.5) is ``[grpo term on the sampled groups, sft term with weight lambda on the
self-explanation rows]``; GRPO SFT-GT-CoT swaps the self-explanations for expert solutions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from expo_rl.engine.batching import pack, tag_rows
from expo_rl.engine.optim import build_optimizer, build_scheduler
from expo_rl.engine.step import StepTerm, batch_normalisers, training_step
from expo_rl.policy import completion_logprobs
from expo_rl.sources import Row


@dataclass
class Updater:
    """The policy, its frozen reference, the loss terms and the optimiser of one training run."""

    model: Any
    reference: Any | None
    terms: list[StepTerm]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    pad_id: int
    max_grad_norm: float = 1.0

    def update(self, rows_per_term: list[list[Row]]) -> dict[str, float]:
        """One update over ``rows_per_term[k]`` (the rows of ``terms[k]``); returns its stats:
        ``<term>/objective`` (the method's own J) and the coefficient's statistics."""
        if len(rows_per_term) != len(self.terms):
            raise ValueError(f"{len(rows_per_term)} row lists for {len(self.terms)} loss terms")
        if not any(rows_per_term):
            return {}
        self.model.train()
        batch = pack(tag_rows(rows_per_term), pad_id=self.pad_id, device=torch.device("cpu"))
        if any(term.needs.reference for term in self.terms):
            # Only the reference pass: with one update per batch (mu = 1) pi_old is the current
            # policy, and training_step takes old log-probs from its own forward pass, so
            # fixed_inputs' extra no-grad pass of the policy would be wasted.
            with torch.no_grad():
                batch["ref_logprobs"] = completion_logprobs(
                    self.reference, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        norms = batch_normalisers([batch], self.terms)
        out = training_step(self.model, batch, self.terms, normalisers=norms)
        out.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.eval()
        stats = {key: float(value) for key, value in out.stats.items()}
        stats["grad_norm"] = float(grad_norm)
        return stats


def make_updater(model: Any, terms: list[StepTerm], *, lr: float, total_updates: int,
                 pad_id: int, reference: Any | None = None, warmup_ratio: float = 0.0,
                 schedule: str = "constant", betas: tuple[float, float] = (0.9, 0.999),
                 max_grad_norm: float = 1.0) -> Updater:
    """An :class:`Updater` with the engine's AdamW and schedule (no weight decay)."""
    optimizer = build_optimizer(model.parameters(), lr=lr, betas=betas)
    scheduler = build_scheduler(optimizer, total_updates=total_updates, schedule=schedule,
                                warmup_ratio=warmup_ratio)
    return Updater(model, reference, terms, optimizer, scheduler, pad_id, max_grad_norm)


def frozen_copy(model: Any) -> Any:
    """A detached, eval-mode copy of ``model`` (the reference / initial policy)."""
    import copy

    frozen = copy.deepcopy(model).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen
