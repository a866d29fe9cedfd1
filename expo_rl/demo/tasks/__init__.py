"""Kept so task files written against the old location keep working: tasks live in
:mod:`expo_rl.tasks` (below the runtime, so ``expo-rl train --task`` can use them)."""

from expo_rl.tasks import BUILTIN, LEVELS, DemoTask, load_task

__all__ = ["BUILTIN", "LEVELS", "DemoTask", "load_task"]
