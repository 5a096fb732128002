"""The request pacer on a simulated clock: budget, spacing, pauses after a 429."""

from __future__ import annotations

import itertools
import threading
from typing import List

from aig_source.ratelimit import RequestPacer


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


def test_shared_across_threads() -> None:
    pacer = RequestPacer(1000, 1.0)
    sent: List[int] = []

    def worker() -> None:
        for _ in range(50):
            pacer.acquire()
            sent.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(sent) == 200
