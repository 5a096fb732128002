"""Client-side pacing under Cloudflare's API rate limit, shared by every request of the process.

Cloudflare allows 1,200 requests per 5 minutes per token, and going over blocks every call of
that token (the dashboard included) for 5 minutes. The pacer keeps this process below a smaller
budget so that a long backfill never trips the limit and leaves room for other clients.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

logger = logging.getLogger(__name__)

SLOWDOWN_AFTER_429 = 0.9
"""After a 429 despite pacing, the budget shrinks by this factor for the rest of the process."""
BURST_SPACING = 0.5
"""Requests may come at most 1 / BURST_SPACING times faster than the even rate, to catch up after
slow pages, while the sliding window still caps the total."""


class RequestPacer:
    """At most `requests` requests in any sliding window of `window_seconds`.

    Requests are also spaced (at least half the even interval apart), so a budget is spent
    smoothly rather than in one burst. A small margin on the window absorbs the difference
    between when a request leaves here and when the server counts it. Each request reserves its
    slot under the lock and then sleeps without it, so other threads go on taking slots, and a
    429 (`pause`) reaches requests that are already waiting.
    """

    def __init__(
        self,
        requests: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sent: Deque[float] = collections.deque()
        self._paused_until = 0.0
        self._slowdown = 1.0
        self.configured_requests = requests
        self.window_seconds = window_seconds
        self.configure(requests, window_seconds)

    def configure(self, requests: int, window_seconds: float) -> None:
        """Sets the budget; a slow-down after a 429 stays in force for the process."""
        if requests < 1 or window_seconds <= 0:
            raise ValueError("the rate limit needs at least 1 request per a positive window")
        with self._lock:
            self.configured_requests = requests
            self.window_seconds = window_seconds

    @property
    def requests(self) -> int:
        """The budget in force: the configured one, slowed down by every 429 so far."""
        return max(1, int(self.configured_requests * self._slowdown))

    @property
    def _margin(self) -> float:
        return min(0.5, 0.02 * self.window_seconds)

    def _reserve(self, now: float) -> float:
        """The time of the next free slot, which is taken (call with the lock held)."""
        horizon = now - self.window_seconds - self._margin
        while self._sent and self._sent[0] <= horizon:
            self._sent.popleft()
        budget = self.requests
        ready = max(now, self._paused_until)
        if len(self._sent) >= budget:
            ready = max(ready, self._sent[-budget] + self.window_seconds + self._margin)
        if self._sent:
            spacing = BURST_SPACING * self.window_seconds / budget
            ready = max(ready, self._sent[-1] + spacing)
        self._sent.append(ready)
        return ready

    def acquire(self) -> float:
        """Blocks until a request may be sent; returns how long it waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                slot = self._reserve(now)
            if slot > now:
                self._sleep(slot - now)
                waited += slot - now
            with self._lock:
                if self._paused_until <= slot:
                    return waited
                # a 429 arrived while this request waited: give the slot back, wait again
                self._sent.remove(slot)

    def pause(self, seconds: float) -> None:
        """Honours a `retry-after` for every request of the process, and slows down."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._slowdown *= SLOWDOWN_AFTER_429
            logger.warning(
                "Cloudflare answered 429: pausing %.0f s, pacing down to %s requests per %.0f s",
                seconds,
                self.requests,
                self.window_seconds,
            )


_shared: Dict[str, RequestPacer] = {}
_shared_lock = threading.Lock()


def paced_seconds(logs: int, per_page: int, pacing: Dict[str, Any]) -> float:
    """How long reading `logs` takes at `per_page` logs a request and a run's `pacing`
    (`requests` per `window_seconds`, as each run's `last_run` keeps it)."""
    return logs / per_page * float(pacing["window_seconds"]) / int(pacing["requests"])


def shared_pacer(requests: int, window_seconds: float, token: str = "") -> RequestPacer:
    """The process-wide pacer of one API token, (re)configured to this budget.

    Cloudflare limits requests per user and token, not per gateway or account: every gateway
    read with one token shares its pacer, and a second token (another account) gets its own.
    Tokens are told apart by a digest, so no pacer holds a secret.
    """
    key = hashlib.sha256(token.encode()).hexdigest()
    with _shared_lock:
        pacer = _shared.get(key)
        if pacer is None:
            pacer = _shared[key] = RequestPacer(requests, window_seconds)
        else:
            pacer.configure(requests, window_seconds)
        return pacer


def forget_shared_pacer() -> None:
    """Drops the process-wide pacers and their history (a new test)."""
    with _shared_lock:
        _shared.clear()


class PacedAdapter(HTTPAdapter):
    """A transport adapter that waits for the pacer before every attempt, retries included."""

    def __init__(self, pacer: RequestPacer) -> None:
        super().__init__()
        self.pacer = pacer

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        self.pacer.acquire()
        return super().send(request, *args, **kwargs)
