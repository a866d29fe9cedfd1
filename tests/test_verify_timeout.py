"""The time limit holds off the main thread and inside daemonic worker processes; hangs are counted.

math-verify's own guard is ``signal.alarm`` (main thread only); ours kills a worker process.
"""

import multiprocessing
import threading
import time

import pytest

from expo_rl.verify import check_equivalence, clear_cache, is_equivalent, verifier_stats
from expo_rl.verify.pool import get_pool

LIMIT_S = 1.0
# Killing and replacing a worker costs a few milliseconds; allow for a loaded 2-core machine.
SLACK_S = 1.0

PATHOLOGICAL = {
    "power tower": "9^{9^{9^{9}}}",
    "huge factorial": "(10^{10})!",
    "nested braces": "{" * 400 + "1" + "}" * 400,
    "nested fractions": "\\frac{1}{" * 120 + "2" + "}" * 120,
}


def run_in_thread(fn):
    box = {}

    def target():
        box["value"] = fn()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "verifier call never returned"
    return box["value"]


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_input_returns_within_the_limit_off_the_main_thread(name):
    clear_cache()
    assert get_pool().wait_ready(120)  # the limit covers the check, not a cold worker start
    before = verifier_stats.snapshot()

    def call():
        start = time.perf_counter()
        verdict = check_equivalence(PATHOLOGICAL[name], "3", timeout_s=LIMIT_S)
        return verdict, time.perf_counter() - start

    verdict, elapsed = run_in_thread(call)
    delta = verifier_stats.difference(verifier_stats.snapshot(), before)
    assert not verdict.equal
    assert elapsed < LIMIT_S + SLACK_S, f"{name}: {elapsed:.2f}s"
    assert delta["calls"] == 1
    # it either finished (as "not equal" or a caught error) or hit the limit and was counted
    if verdict.status == "timeout":
        assert delta["timeouts"] == 1 and delta["worker_restarts"] == 1
        assert delta["pred_parse_failures"] == 0  # a timeout is not also a parse failure
    else:
        assert delta["timeouts"] == 0


def test_power_tower_is_a_counted_timeout_and_the_pool_recovers():
    clear_cache()
    assert get_pool().wait_ready(120)
    before = verifier_stats.snapshot()
    verdict = run_in_thread(lambda: check_equivalence("9^{9^{9^{9}}}", "1", timeout_s=LIMIT_S))
    assert verdict.status == "timeout"
    delta = verifier_stats.difference(verifier_stats.snapshot(), before)
    assert delta["timeouts"] == 1 and delta["worker_restarts"] == 1
    # the replacement worker answers correctly
    assert run_in_thread(lambda: is_equivalent("\\frac{6}{4}", "1.5", timeout_s=30))


def test_many_threads_share_the_pool():
    clear_cache()
    pairs = [(f"\\frac{{{2 * i}}}{{{2 * i + 2}}}", f"\\frac{{{i}}}{{{i + 1}}}") for i in range(1, 13)]
    results = [None] * len(pairs)

    def worker(index):
        results[index] = is_equivalent(*pairs[index], timeout_s=30)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(pairs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [True] * len(pairs)


def _in_daemonic_child(queue):
    # A multiprocessing Pool worker is daemonic: it may not start multiprocessing children,
    # which is why the verifier uses plain subprocesses.
    start = time.perf_counter()
    ok = is_equivalent("\\frac{1}{2}", "0.5", timeout_s=60)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    hung = check_equivalence("9^{9^{9^{9}}}", "1", timeout_s=LIMIT_S)
    queue.put((ok, warm, hung.status, time.perf_counter() - start,
               verifier_stats.snapshot()["timeouts"]))


def test_limit_holds_inside_a_daemonic_worker_process():
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_in_daemonic_child, args=(queue,), daemon=True)
    child.start()
    ok, _, status, elapsed, timeouts = queue.get(timeout=180)
    child.join(timeout=30)
    assert ok
    assert status == "timeout" and elapsed < LIMIT_S + SLACK_S and timeouts == 1
