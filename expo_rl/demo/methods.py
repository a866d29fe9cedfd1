"""The methods ``expo-rl demo`` compares: each is a shipped preset ``expo_rl/presets/demo/<name>.yaml``
that ``expo-rl train demo/<name>`` runs as it is (STYLE: "an algorithm is a configuration").

| name | terms | positive sample |
| --- | --- | --- |
| ``grpo`` | grpo | none |
| ``grpo_sft_gt_cot`` | grpo + lambda * exp_sft | expert solution ``c_E`` (paper: "GRPO SFT-GT-CoT") |
| ``exp_grpo`` | grpo + lambda * exp_sft | self-explanation from the initial policy (SPEC 3.5) |
| ``exp_grpo_refresh`` | grpo + lambda * exp_sft | self-explanations regenerated from the current policy every ``refresh_every`` steps, kept only if every step is right |
| ``exp_dpo_offline`` | dpo | chosen: self-explanation of the initial policy, rejected: its own sample (SPEC 3.4) |
| ``exp_dpo_online`` | dpo | both regenerated from the current policy every ``refresh_every`` steps |
| ``dpo_expert_offline`` / ``dpo_expert_online`` | dpo | chosen: the expert solution |

The table's term names are the presets' (``grpo``, ``exp_sft``, ``dpo``): the report reads their
metrics (``grpo/zero_signal_fraction``, ``exp_sft/explain_acceptance_rate``, ``dpo/loss``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["grpo", "dpo"]


@dataclass(frozen=True)
class Method:
    """One compared method: its preset, its label in the report, and whether it regenerates
    its data from the current policy (``online``: the preset's ``refresh_every`` > 0)."""

    name: str
    label: str
    family: Family
    online: bool = False

    @property
    def preset(self) -> str:
        return f"demo/{self.name}"

    @property
    def positive_term(self) -> int | None:
        """Index of the term whose source draws positives (explanations / pairs), if any."""
        if self.family == "dpo":
            return 0
        return None if self.name == "grpo" else 1


def default_methods() -> list[Method]:
    """The paper's Table 3 comparison."""
    return [
        Method("grpo", "GRPO", "grpo"),
        Method("grpo_sft_gt_cot", "GRPO SFT-GT-CoT", "grpo"),
        Method("exp_grpo", "ExP-GRPO", "grpo"),
    ]


def full_methods() -> list[Method]:
    """Table 3 plus refreshed ExP-GRPO and the Table 2 DPO grid (chosen c~ / c_E, offline / online)."""
    return default_methods() + [
        Method("exp_grpo_refresh", "ExP-GRPO (refreshed, strict)", "grpo", online=True),
        Method("exp_dpo_offline", "ExP-DPO offline (c~)", "dpo"),
        Method("dpo_expert_offline", "DPO offline (c_E)", "dpo"),
        Method("exp_dpo_online", "ExP-DPO online (c~)", "dpo", online=True),
        Method("dpo_expert_online", "DPO online (c_E)", "dpo", online=True),
    ]
