"""Subcommands of ``expo-rl``: each module defines ``register(subparsers)`` which adds a parser
and sets ``run=callable(args) -> int`` as its default."""
