"""Data-source registry (SPEC section 2, the "data source" column). See ``expo_rl.sources.base``.

Every module of this package is imported here, so a new source registers itself by existing:
adding one is a one-file job. Built in: ``fixed`` (SFT pairs), ``frozen_samples`` (RFT),
``on_policy`` (online RFT, PPO, GRPO) and ``preference_pairs`` (DPO).
"""

import importlib
import pkgutil

from expo_rl.sources.base import (
    SOURCES,
    Row,
    Source,
    SourceEnv,
    SourceSpec,
    StepContext,
    get_source,
    register_source,
)

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in ("base", "cursor") and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["SOURCES", "Row", "Source", "SourceEnv", "SourceSpec", "StepContext", "get_source",
           "register_source"]
