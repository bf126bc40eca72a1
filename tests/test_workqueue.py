"""The controller work queue (client-go util/workqueue semantics) on a FakeClock: de-duplication,
re-queue after done, delays woken by FakeClock.advance, exponential failure backoff, shutdown."""
from __future__ import annotations

import threading
import time

import pytest

from localflow.clock import Clock, FakeClock
from localflow.controllers.workqueue import ItemExponentialFailureRateLimiter, WorkQueue

A = ("ConfigMap", "default", "a")
B = ("ConfigMap", "default", "b")


def test_a_key_added_twice_is_processed_once():
    q = WorkQueue(FakeClock())
    q.add(A)
    q.add(B)
    q.add(A)
    assert len(q) == 2
    assert q.get(timeout=0) == A
    assert q.get(timeout=0) == B
    assert q.get(timeout=0) is None


def test_a_key_added_while_processing_is_processed_again_after_done_not_in_parallel():
    q = WorkQueue(FakeClock())
    q.add(A)
    assert q.get(timeout=0) == A
    q.add(A)  # an event arrives while a worker reconciles A
    q.add(A)
    assert q.get(timeout=0) is None, "a second worker must not get A while the first processes it"
    q.done(A)
    assert q.get(timeout=0) == A
    q.done(A)
    assert q.get(timeout=0) is None


def test_add_after_waits_for_the_fake_clock():
    clock = FakeClock()
    q = WorkQueue(clock)
    q.add_after(A, 30)
    assert q.get(timeout=0) is None
    assert q.waiting() == 1 and q.next_ready_in() == pytest.approx(30)
    clock.advance(29.9)
    assert q.get(timeout=0) is None
    clock.advance(0.1)
    assert q.get(timeout=0) == A
    assert q.waiting() == 0


def test_add_after_keeps_the_earlier_time():
    clock = FakeClock()
    q = WorkQueue(clock)
    q.add_after(A, 30)
    q.add_after(A, 5)
    q.add_after(A, 60)
    clock.advance(5)
    assert q.get(timeout=0) == A
    q.done(A)
    clock.advance(100)
    assert q.get(timeout=0) is None, "the superseded ready times must not add A again"


def test_advance_wakes_a_blocked_get():
    clock = FakeClock()
    q = WorkQueue(clock)
    q.add_after(A, 3600)
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=30)))
    t.start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:  # the getter is blocked: FakeClock time does not pass
        clock.advance(600)
        t.join(0.05)
    t.join(5)
    assert got == [A]
    assert clock.now() - FakeClock().now() >= 3600


def test_real_clock_delay_is_honoured():
    q = WorkQueue(Clock())
    start = time.monotonic()
    q.add_after(A, 0.05)
    assert q.get(timeout=5) == A
    assert time.monotonic() - start >= 0.045


def test_rate_limited_backoff_doubles_from_5ms_to_1000s_and_forget_resets():
    rl = ItemExponentialFailureRateLimiter()
    delays = [rl.when(A) for _ in range(20)]
    assert delays[:4] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert delays[-1] == 1000.0 and max(delays) == 1000.0
    assert rl.num_requeues(A) == 20 and rl.num_requeues(B) == 0
    rl.forget(A)
    assert rl.num_requeues(A) == 0 and rl.when(A) == pytest.approx(0.005)
    for _ in range(200):
        rl.when(B)
    assert rl.when(B) == 1000.0


def test_add_rate_limited_on_the_queue():
    clock = FakeClock()
    q = WorkQueue(clock)
    q.add_rate_limited(A)  # 5 ms
    assert q.get(timeout=0) is None
    clock.advance(0.005)
    assert q.get(timeout=0) == A
    q.done(A)
    q.add_rate_limited(A)  # 10 ms
    clock.advance(0.009)
    assert q.get(timeout=0) is None
    clock.advance(0.001)
    assert q.get(timeout=0) == A
    assert q.num_requeues(A) == 2
    q.forget(A)
    assert q.num_requeues(A) == 0


def test_shutdown_releases_blocked_getters_and_ignores_adds():
    q = WorkQueue(FakeClock())
    results = []
    threads = [threading.Thread(target=lambda: results.append(q.get())) for _ in range(3)]
    for t in threads:
        t.start()
    q.shutdown()
    for t in threads:
        t.join(5)
    assert results == [None, None, None] and not any(t.is_alive() for t in threads)
    q.add(A)
    q.add_after(B, 1)
    assert q.get(timeout=0) is None and q.shutting_down


def test_get_timeout_is_bounded_in_real_time():
    q = WorkQueue(FakeClock())
    start = time.monotonic()
    assert q.get(timeout=0.05) is None
    assert 0.04 <= time.monotonic() - start < 5
