"""Old location of the task interface; see :mod:`expo_rl.tasks.base`."""

from expo_rl.tasks.base import LEVELS, DemoTask

__all__ = ["LEVELS", "DemoTask"]
