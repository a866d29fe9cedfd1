"""Demo tasks: built-in ones by name, or any Python file that defines a :class:`DemoTask`.

``load_task("modular")`` returns the shipped task; ``load_task("path/to/task.py")`` imports
that file and returns its ``TASK`` object (or, failing that, an instance of the one
``DemoTask`` subclass the file defines). See docs/ADDING_A_TASK.md.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from expo_rl.tasks.base import LEVELS, DemoTask

BUILTIN: dict[str, str] = {"modular": "expo_rl.tasks.modular", "addition": "expo_rl.tasks.addition"}

__all__ = ["BUILTIN", "LEVELS", "DemoTask", "load_task"]


def load_task(spec: str) -> DemoTask:
    """The task named ``spec`` (a built-in name or a ``.py`` file path)."""
    if spec in BUILTIN:
        return _task_of(importlib.import_module(BUILTIN[spec]), spec)
    path = Path(spec)
    if path.suffix != ".py":
        raise ValueError(f"--task {spec!r}: expected a built-in task ({', '.join(BUILTIN)}) "
                         "or a path to a .py file defining a DemoTask")
    if not path.is_file():
        raise FileNotFoundError(f"--task {spec!r}: no such file")
    name = f"expo_rl_user_task_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    module_spec.loader.exec_module(module)
    return _task_of(module, str(path))


def _task_of(module, where: str) -> DemoTask:
    task = getattr(module, "TASK", None)
    if task is None:
        classes = [obj for obj in vars(module).values()
                   if inspect.isclass(obj) and issubclass(obj, DemoTask) and obj is not DemoTask
                   and not inspect.isabstract(obj) and obj.__module__ == module.__name__]
        if len(classes) != 1:
            raise ValueError(f"task {where}: define TASK = YourTask() (found {len(classes)} "
                             "DemoTask subclasses, expected exactly one)")
        task = classes[0]()
    if not isinstance(task, DemoTask):
        raise TypeError(f"task {where}: TASK must be an instance of "
                        f"expo_rl.demo.tasks.base.DemoTask, got {type(task).__name__}")
    bad = [lv for lv in task.solved_levels if lv not in task.levels]
    if bad or not task.levels:
        raise ValueError(f"task {where}: solved_levels {bad} are not in levels {task.levels}")
    return task
