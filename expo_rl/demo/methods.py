"""The methods the demo compares, as data: which loss terms, and where positives come from.

Every method is a preset over the same parts (STYLE: "an algorithm is a configuration"):

| name | terms | positive sample |
| --- | --- | --- |
| ``grpo`` | grpo | none |
| ``grpo_sft_gt_cot`` | grpo + lambda * sft | expert solution ``c_E`` (paper: "GRPO SFT-GT-CoT") |
| ``exp_grpo`` | grpo + lambda * sft | self-explanation from the initial policy (SPEC 3.5) |
| ``exp_grpo_refresh`` | grpo + lambda * sft | self-explanations regenerated from the current policy every ``refresh_every`` steps, kept only if every step is right |
| ``exp_dpo_offline`` | dpo | chosen: self-explanation of the initial policy, rejected: its wrong answer (SPEC 3.4) |
| ``exp_dpo_online`` | dpo | both regenerated from the current policy every ``refresh_every`` steps |
| ``dpo_expert_offline`` / ``dpo_expert_online`` | dpo | chosen: the expert solution |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["grpo", "dpo"]
Positive = Literal["none", "self_explanation", "expert"]


@dataclass(frozen=True)
class Method:
    """One compared method. ``refresh_every`` = 0 keeps the positives (and DPO's rejected
    samples) of the initial policy for the whole run; k > 0 regenerates them from the current
    policy every k steps (the "online" variants). ``strict`` accepts a regenerated explanation
    only when every step of it is right (``task.check_trace``)."""

    name: str
    label: str
    family: Family
    positive: Positive
    refresh_every: int = 0
    strict: bool = False

    @property
    def online(self) -> bool:
        return self.refresh_every > 0


def default_methods() -> list[Method]:
    """The paper's Table 3 comparison."""
    return [
        Method("grpo", "GRPO", "grpo", "none"),
        Method("grpo_sft_gt_cot", "GRPO SFT-GT-CoT", "grpo", "expert"),
        Method("exp_grpo", "ExP-GRPO", "grpo", "self_explanation"),
    ]


def full_methods(refresh_every: int) -> list[Method]:
    """Table 3 plus refreshed ExP-GRPO and the Table 2 DPO grid (chosen c~ / c_E, offline / online)."""
    return default_methods() + [
        Method("exp_grpo_refresh", "ExP-GRPO (refreshed, strict)", "grpo", "self_explanation",
               refresh_every=refresh_every, strict=True),
        Method("exp_dpo_offline", "ExP-DPO offline (c~)", "dpo", "self_explanation"),
        Method("dpo_expert_offline", "DPO offline (c_E)", "dpo", "expert"),
        Method("exp_dpo_online", "ExP-DPO online (c~)", "dpo", "self_explanation",
               refresh_every=refresh_every, strict=True),
        Method("dpo_expert_online", "DPO online (c_E)", "dpo", "expert", refresh_every=refresh_every),
    ]
