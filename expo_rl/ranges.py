"""Allowed ranges of numbers: ``Range`` (open or closed bounds, finite values only) and an
argparse ``type=`` that checks one. The tables of what each config key allows, and the config
checks, are in ``expo_rl.engine.ranges``; this module has no dependencies so every layer's
command-line options can use it."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    """``lo (<|<=) x (<|<=) hi``; ``None`` bounds are open-ended. ``note`` explains the bound."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""

    def __contains__(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))

    def text(self, nullable: bool = False) -> str:
        if self.lo is not None and self.hi is not None:
            body = f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            body = f"{'>' if self.lo_open else '>='} {self.lo:g}"
        elif self.hi is not None:
            body = f"{'<' if self.hi_open else '<='} {self.hi:g}"
        else:
            body = "a finite number"
        body += " or null" if nullable else ""
        return f"{body} ({self.note})" if self.note else body


def gt(x: float, note: str = "") -> Range:
    return Range(lo=x, lo_open=True, note=note)


def ge(x: float, note: str = "") -> Range:
    return Range(lo=x, note=note)


UNIT = Range(0.0, 1.0)
FINITE = Range()

def arg_type(kind: Callable[[str], Any], rng: Range) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses with ``kind`` and checks ``rng`` (argparse names the flag)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if value not in rng:
            raise argparse.ArgumentTypeError(f"{text} is not allowed; allowed: {rng.text()}")
        return value

    parse.__name__ = kind.__name__
    return parse


__all__ = ["FINITE", "UNIT", "Range", "arg_type", "ge", "gt"]
