"""The request pacer on a simulated clock: budget, spacing, pauses after a 429."""

from __future__ import annotations

import itertools
import threading
import time
from typing import List

from aig_source.ratelimit import RequestPacer, forget_shared_pacer, shared_pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def sends(pacer: RequestPacer, clock: FakeClock, count: int, work: float = 0.0) -> List[float]:
    times = []
    for _ in range(count):
        pacer.acquire()
        times.append(clock.now)
        clock.now += work
    return times


def test_never_more_than_the_budget_in_any_window() -> None:
    clock = FakeClock()
    pacer = RequestPacer(30, 10.0, clock=clock, sleep=clock.sleep)

    times = sends(pacer, clock, 200)

    for index, start in enumerate(times):
        in_window = [t for t in times[index:] if t < start + 10.0]
        assert len(in_window) <= 30
    # and the budget is used: 200 requests take about 200 / 3 per second
    assert times[-1] - times[0] < 200 / 3 * 1.05


def test_requests_are_spaced_not_burst() -> None:
    clock = FakeClock()
    pacer = RequestPacer(100, 100.0, clock=clock, sleep=clock.sleep)

    times = sends(pacer, clock, 20)

    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.5 - 1e-9


def test_slow_requests_catch_up_within_the_budget() -> None:
    clock = FakeClock()
    pacer = RequestPacer(10, 10.0, clock=clock, sleep=clock.sleep)

    slow = sends(pacer, clock, 5, work=1.9)
    fast = sends(pacer, clock, 10)

    assert fast[-1] - fast[0] < 9.5, "after slow pages it may go faster than even spacing"
    everything = slow + fast
    for index, start in enumerate(everything):
        assert len([t for t in everything[index:] if t < start + 10.0]) <= 10


def test_pause_honours_retry_after_and_slows_down() -> None:
    clock = FakeClock()
    pacer = RequestPacer(100, 10.0, clock=clock, sleep=clock.sleep)
    sends(pacer, clock, 3)

    pacer.pause(30.0)
    before = clock.now
    sends(pacer, clock, 1)

    assert clock.now >= before + 30.0
    assert pacer.requests == 90


def most_in_any_window(times: List[float], window: float) -> int:
    ordered = sorted(times)
    return max(
        (
            len([t for t in ordered[index:] if t < start + window])
            for index, start in enumerate(ordered)
        ),
        default=0,
    )


def test_a_slowdown_survives_the_next_source_configuring_the_pacer() -> None:
    forget_shared_pacer()
    try:
        pacer = shared_pacer(100, 10.0)
        pacer.pause(0.0)
        again = shared_pacer(100, 10.0)  # what every backfill chunk does when it builds a source

        assert again is pacer and again.requests == 90
        clock = FakeClock()
        paced = RequestPacer(100, 10.0, clock=clock, sleep=clock.sleep)
        paced.pause(0.0)
        paced.configure(100, 10.0)
        times = sends(paced, clock, 300)
        assert most_in_any_window(times, 10.0) == 90
    finally:
        forget_shared_pacer()


def test_threads_share_the_budget_at_the_paced_rate() -> None:
    granted: List[float] = []

    class RecordingPacer(RequestPacer):
        def _reserve(self, now: float) -> float:
            slot = super()._reserve(now)
            granted.append(slot)
            return slot

    pacer = RecordingPacer(10, 1.0)
    sent: List[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            pacer.acquire()
            with lock:
                sent.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(sent) == len(granted) == 40
    # the slots the threads were given: a thread woken late by a busy machine sends after its
    # slot, which the wall-clock send times would count against the pacer
    assert most_in_any_window(granted, 1.0) <= 10
    # 40 requests at 10 per second: the last window starts after about 3 s, not at once
    assert max(sent) - started >= 2.9
    assert max(sent) - started < 6.0, "and the budget is used, not wasted"


def test_a_waiting_request_does_not_block_other_threads() -> None:
    pacer = RequestPacer(2, 1.0)
    pacer.acquire()
    pacer.acquire()
    waiter = threading.Thread(target=pacer.acquire)
    waiter.start()
    time.sleep(0.1)  # the waiter now sleeps until the window frees a slot

    started = time.monotonic()
    pacer.configure(2, 1.0)
    pacer.pause(0.0)
    blocked = time.monotonic() - started
    waiter.join()

    assert blocked < 0.1, f"configure and pause waited {blocked:.2f} s for a sleeping request"


def test_a_pause_reaches_requests_already_waiting() -> None:
    pacer = RequestPacer(2, 1.0)
    pacer.acquire()
    pacer.acquire()
    sent: List[float] = []
    waiter = threading.Thread(target=lambda: (pacer.acquire(), sent.append(time.monotonic())))
    waiter.start()
    time.sleep(0.1)  # the waiter sleeps for the slot that frees in about 0.9 s

    paused_at = time.monotonic()
    pacer.pause(1.5)
    waiter.join()

    assert sent[0] - paused_at >= 1.45, "the waiting request honoured the retry-after"
