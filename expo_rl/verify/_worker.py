"""A verifier worker process: JSON requests on stdin, JSON replies on stdout, one per line.

Started by :mod:`expo_rl.verify.pool` as ``python -m expo_rl.verify._worker``. A plain
subprocess (not ``multiprocessing``) so that it can be started from any thread, from a
daemonic worker process (which may not have ``multiprocessing`` children) and from a process
that already runs torch threads (no fork of a threaded interpreter). The parent kills a worker
that overruns its time limit; the worker also exits when its parent disappears.

Protocol: first line written is ``{"ready": true}``; then each request ``{"id": int, "pred": str,
"gold": str, "strict": bool}`` gets ``{"id": int, "equal": bool, "pred_parsed": bool,
"gold_parsed": bool, "error": str | null}``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time


def _limit_memory() -> None:
    # A huge exponent (9^{9^{9^9}}) makes sympy build ever larger integers; cap the address space
    # so such a worker dies with MemoryError instead of swapping the machine.
    limit_mb = int(os.environ.get("EXPO_RL_VERIFY_MEMORY_MB", "4096"))
    try:
        import resource

        limit = limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass  # not on every platform; the parent's time limit still applies


def _exit_with_parent(parent: int) -> None:
    # If the training process dies without closing our stdin (SIGKILL), do not linger.
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def main() -> None:
    _limit_memory()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    from expo_rl.verify.mathverify import check

    # Replies go to a private copy of stdout; anything a library prints lands on stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    check("1", "1")  # warm up imports and caches before announcing readiness
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        reply = check(request["pred"], request["gold"], bool(request.get("strict", True)))
        reply["id"] = request["id"]
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
