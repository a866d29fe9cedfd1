"""The call into ``math-verify``, with its own signal-based timeout disabled.

math-verify's ``parse``/``verify`` guard themselves with ``signal.alarm``, which raises off the
main thread ("signal only works in main thread"). We pass ``parsing_timeout=None`` and
``timeout_seconds=None`` and enforce the limit from outside (``expo_rl.verify.pool`` runs this
function in a worker process and kills the worker when it overruns).

Both sides are wrapped in ``\\boxed{}`` before parsing, so an already-extracted answer such as
``\\frac{1}{2}`` or ``4:30 p.m.`` is read as one expression rather than searched for numbers.
"""

from __future__ import annotations

import logging
from typing import Any


def _quiet() -> None:
    # With the timeout disabled math-verify warns once per process that we must time out
    # ourselves (we do); its per-expression debug logs are noise in a training loop.
    logging.getLogger("math_verify").setLevel(logging.ERROR)


def check(pred: str, gold: str, strict: bool = True) -> dict[str, Any]:
    """Compare one predicted answer with one gold answer.

    Returns ``{"equal": bool, "pred_parsed": bool, "gold_parsed": bool, "error": str | None}``;
    ``*_parsed`` is False when math-verify produced no sympy object for that side (it then falls
    back to comparing strings). ``strict`` is math-verify's flag: variables must match and sets
    are not comparable with tuples. Never raises.
    """
    _quiet()
    try:
        from math_verify import parse, verify
        from sympy import Basic, MatrixBase

        gold_parsed = parse("\\boxed{" + gold + "}", parsing_timeout=None)
        pred_parsed = parse("\\boxed{" + pred + "}", parsing_timeout=None)
        equal = bool(verify(gold_parsed, pred_parsed, strict=strict, timeout_seconds=None))
        return {
            "equal": equal,
            "pred_parsed": any(isinstance(x, (Basic, MatrixBase)) for x in pred_parsed),
            "gold_parsed": any(isinstance(x, (Basic, MatrixBase)) for x in gold_parsed),
            "error": None,
        }
    except Exception as error:  # the verifier must never raise into training (RecursionError, ...)
        return {"equal": False, "pred_parsed": False, "gold_parsed": False,
                "error": f"{type(error).__name__}: {error}"[:500]}
