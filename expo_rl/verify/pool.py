"""A small pool of persistent verifier processes with a time limit per task.

Why processes: sympy can hang (``9^{9^{9^9}}``, deeply nested LaTeX) inside C code that no
thread can interrupt, and math-verify's own ``signal.alarm`` guard only works on the main
thread. A worker that overruns its limit is killed and replaced; the caller gets ``None``
("timed out") at the limit instead of hanging. Workers are plain subprocesses
(``python -m expo_rl.verify._worker``, see there why not ``multiprocessing``), started lazily
on first use, reused across calls, and re-created after a fork (a child process gets its own
pool). The limit covers the verification itself; a call that finds every worker busy first
waits for one (each busy worker is itself bounded by its caller's limit).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def default_pool_size() -> int:
    """``EXPO_RL_VERIFY_WORKERS`` if set, else min(4, CPU count)."""
    configured = os.environ.get("EXPO_RL_VERIFY_WORKERS")
    if configured:
        return max(1, int(configured))
    return max(1, min(4, os.cpu_count() or 1))


class WorkerStartError(RuntimeError):
    """A verifier worker process could not be started (or never said it was ready)."""


class _Worker:
    """One ``_worker`` subprocess and the thread that reads its replies."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # The worker must import this package even from a checkout that is not installed.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "expo_rl.verify._worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, text=True, bufsize=1,
        )
        self.replies: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.dead = threading.Event()
        threading.Thread(target=self._read, daemon=True, name="expo-rl-verify-reader").start()

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                message = json.loads(line)
                if message.get("ready"):
                    self.ready.set()
                else:
                    self.replies.put(message)
        except (ValueError, OSError):
            pass
        self.dead.set()
        self.ready.set()  # wake a caller waiting for readiness; it then sees `dead`
        self.replies.put(None)

    def wait_ready(self, timeout_s: float) -> bool:
        return self.ready.wait(timeout_s) and not self.dead.is_set()

    def send(self, request: dict[str, Any]) -> None:
        self.proc.stdin.write(json.dumps(request) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def kill(self) -> None:
        for stream in (self.proc.stdin,):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass


class VerifierPool:
    """``size`` workers; :meth:`run` sends one comparison to an idle worker with a time limit."""

    def __init__(self, size: int | None = None, *, start_timeout_s: float = 120.0) -> None:
        self.size = size or default_pool_size()
        self.start_timeout_s = start_timeout_s
        self.pid = os.getpid()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._next_id = 0
        self.restarts = 0
        for _ in range(self.size):
            self._add_worker()

    def _add_worker(self) -> _Worker:
        worker = _Worker()
        with self._lock:
            self._workers.append(worker)
        self._idle.put(worker)
        return worker

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
            self.restarts += 1
        self._add_worker()

    def run(self, pred: str, gold: str, strict: bool, timeout_s: float) -> dict[str, Any] | None:
        """The worker's reply dict, or None when the comparison overran ``timeout_s`` seconds.

        Raises :class:`WorkerStartError` when no worker could be started (the caller then falls
        back to an in-process check).
        """
        for _ in range(self.size + 1):
            worker = self._idle.get()
            if worker.wait_ready(self.start_timeout_s):
                break
            # Never became ready, or died while idle: replace it and try the next one.
            self._replace(worker)
        else:
            raise WorkerStartError("no verifier worker became ready "
                                   f"within {self.start_timeout_s:.0f}s")
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
        try:
            worker.send({"id": request_id, "pred": pred, "gold": gold, "strict": strict})
            reply = worker.replies.get(timeout=timeout_s)
        except queue.Empty:
            self._replace(worker)
            return None
        except (OSError, ValueError):
            reply = None  # broken pipe: the worker died before reading the request
        if reply is None or reply.get("id") != request_id:
            # The worker died mid-task (a crash, or the memory cap): a failed comparison.
            self._replace(worker)
            return {"equal": False, "pred_parsed": False, "gold_parsed": False,
                    "error": "verifier worker died"}
        self._idle.put(worker)
        return reply

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Block until every worker has started (a warm pool); False on timeout."""
        timeout_s = self.start_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            workers = list(self._workers)
        return all(worker.wait_ready(timeout_s) for worker in workers)

    def close(self) -> None:
        """Stop every worker (called at exit; a closed pool must not be used again)."""
        with self._lock:
            workers, self._workers = list(self._workers), []
        for worker in workers:
            worker.kill()


_POOL: VerifierPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> VerifierPool:
    """This process's pool, created on first use (and again in a forked child)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            # A forked child must not share the parent's pipes; start its own workers.
            _POOL = VerifierPool()
        return _POOL


def shutdown_pool() -> None:
    """Stop this process's workers now (a later call starts a fresh pool)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and pool.pid == os.getpid():
        pool.close()


def configure_pool(size: int) -> None:
    """Restart the pool with ``size`` workers."""
    global _POOL
    shutdown_pool()
    with _POOL_LOCK:
        _POOL = VerifierPool(size)


def _after_fork_in_child() -> None:
    # The parent's pool (its pipes, reader threads and possibly a held lock) is not ours: start
    # afresh on first use. The parent's workers stay the parent's.
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


atexit.register(shutdown_pool)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
