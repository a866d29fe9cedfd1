"""expo-rl: RL post-training of reasoning LMs.

Every method is a composition of a data source, a reward function and a gradient-coefficient
function over one shared training step (DeepSeekMath appendix A.1; SPEC section 2), and ExPO
adds self-explanations as positive samples (SPEC section 3).

In Python: ``from expo_rl import Problem, Term, load_policy, train`` (see :mod:`expo_rl.api`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module: imported on first use (PEP 562), because `import expo_rl.data` (and the
# `expo-rl` command) must not pay for torch, transformers and accelerate.
_EXPORTS = {"train": "expo_rl.api", "Term": "expo_rl.api", "RunConfig": "expo_rl.engine.config",
            "Problem": "expo_rl.data.records", "load_policy": "expo_rl.policy"}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'expo_rl' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
