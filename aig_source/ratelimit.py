"""Client-side pacing under Cloudflare's API rate limit, shared by every request of the process.

Cloudflare allows 1,200 requests per 5 minutes per token, and going over blocks every call of
that token (the dashboard included) for 5 minutes. The pacer keeps this process below a smaller
budget so that a long backfill never trips the limit and leaves room for other clients.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, Optional

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
    between when a request leaves here and when the server counts it.
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
        self.waited_seconds = 0.0
        self.requests = requests
        self.window_seconds = window_seconds
        self.configure(requests, window_seconds)

    def configure(self, requests: int, window_seconds: float) -> None:
        if requests < 1 or window_seconds <= 0:
            raise ValueError("the rate limit needs at least 1 request per a positive window")
        with self._lock:
            self.requests = requests
            self.window_seconds = window_seconds

    @property
    def _margin(self) -> float:
        return min(0.5, 0.02 * self.window_seconds)

    def acquire(self) -> float:
        """Blocks until a request may be sent; returns how long it waited."""
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                horizon = now - self.window_seconds - self._margin
                while self._sent and self._sent[0] <= horizon:
                    self._sent.popleft()
                ready = self._paused_until
                if len(self._sent) >= self.requests:
                    ready = max(
                        ready, self._sent[-self.requests] + self.window_seconds + self._margin
                    )
                if self._sent:
                    spacing = BURST_SPACING * self.window_seconds / self.requests
                    ready = max(ready, self._sent[-1] + spacing)
                if ready <= now:
                    self._sent.append(now)
                    self.waited_seconds += waited
                    return waited
                self._sleep(ready - now)
                waited += ready - now

    def pause(self, seconds: float) -> None:
        """Honours a `retry-after` for every request of the process, and slows down."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            slower = max(1, int(self.requests * SLOWDOWN_AFTER_429))
            logger.warning(
                "Cloudflare answered 429: pausing %.0f s, pacing down to %s requests per %.0f s",
                seconds,
                slower,
                self.window_seconds,
            )
            self.requests = slower

    def sent_in_window(self) -> int:
        """Requests sent within the last window."""
        with self._lock:
            horizon = self._clock() - self.window_seconds
            return sum(1 for sent in self._sent if sent > horizon)


_shared: Optional[RequestPacer] = None
_shared_lock = threading.Lock()


def shared_pacer(requests: int, window_seconds: float) -> RequestPacer:
    """The process-wide pacer, (re)configured to this budget."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = RequestPacer(requests, window_seconds)
        elif (_shared.requests, _shared.window_seconds) != (requests, window_seconds):
            _shared.configure(requests, window_seconds)
        return _shared


def forget_shared_pacer() -> None:
    """Drops the process-wide pacer and its history (a new token, or a new test)."""
    global _shared
    with _shared_lock:
        _shared = None


class PacedAdapter(HTTPAdapter):
    """A transport adapter that waits for the pacer before every attempt, retries included."""

    def __init__(self, pacer: RequestPacer) -> None:
        super().__init__()
        self.pacer = pacer

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        self.pacer.acquire()
        return super().send(request, *args, **kwargs)
