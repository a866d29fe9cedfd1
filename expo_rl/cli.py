"""The ``expo-rl`` command. Each subcommand lives in ``expo_rl/commands/<name>.py`` and exposes
``register(subparsers)``; this module only discovers and dispatches them."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from expo_rl import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="expo-rl",
        description="RL post-training of reasoning language models (SFT, RFT, DPO, PPO, GRPO, ExPO).",
    )
    parser.add_argument("--version", action="version", version=f"expo-rl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except expected_errors() as error:
        # A user can fix these: one line, no traceback. Anything else is a bug and keeps it.
        print(f"expo-rl {args.command}: error: {one_line(error)}", file=sys.stderr)
        return getattr(error, "exit_code", 2)


def expected_errors() -> tuple[type[BaseException], ...]:
    """Exceptions every command reports as one line with exit status 2 (or the error's
    ``exit_code``): config, data and setup errors (expo_rl.errors)."""
    from expo_rl.data.result import DataError
    from expo_rl.engine.typed_config import ConfigError
    from expo_rl.errors import UserError

    return (UserError, ConfigError, DataError, FileNotFoundError, NotADirectoryError,
            IsADirectoryError, PermissionError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (file errors name their file)."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = " ".join(str(error).split()) or type(error).__name__
    return text


if __name__ == "__main__":
    sys.exit(main())
