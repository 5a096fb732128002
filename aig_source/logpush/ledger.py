"""Which Logpush files are loaded: the progress a load commits with its rows.

A bucket's ledger remembers by name every file modified within `lookback_seconds` of the newest
file loaded, and a `settled_before` time: every file modified before it is loaded (or in the
failed list). A file is read when it is failed, or neither named nor settled. So a file listed
again is skipped, a late file in an older date folder (modified now) is read, and the ledger
stays small however long the bucket's history grows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional

LOADED = "loaded"
SETTLED_BEFORE = "settled_before"
FAILED = "failed"


class FileLedger:
    """The files of one bucket: loaded, settled, failed. Works on the resource state in place."""

    def __init__(self, state: Dict[str, Any], lookback_seconds: float) -> None:
        self.state = state
        self.lookback = timedelta(seconds=lookback_seconds)
        self.loaded: Dict[str, str] = state.setdefault(LOADED, {})
        self.failed: Dict[str, str] = state.setdefault(FAILED, {})
        settled = state.get(SETTLED_BEFORE)
        self.settled_before: Optional[datetime] = (
            datetime.fromisoformat(settled) if settled else None
        )

    def wants(self, key: str, modified: datetime) -> bool:
        """Whether the file needs reading."""
        if key in self.failed:
            return True
        if key in self.loaded:
            return False
        return self.settled_before is None or modified >= self.settled_before

    def mark_loaded(self, key: str, modified: datetime) -> None:
        self.failed.pop(key, None)
        self.loaded[key] = modified.isoformat()

    def mark_failed(self, key: str, cause: str) -> None:
        self.failed[key] = cause

    def forget_failed(self, keys: List[str]) -> None:
        """Failed files no longer in the bucket (deleted): nothing is left to read."""
        for key in keys:
            self.failed.pop(key, None)

    def settle(self) -> None:
        """Moves `settled_before` up to the lookback before the newest file loaded, and forgets
        the names of files modified before it."""
        if not self.loaded:
            return
        newest = max(datetime.fromisoformat(value) for value in self.loaded.values())
        settled = newest - self.lookback
        if self.settled_before is not None and self.settled_before >= settled:
            return
        self.settled_before = settled
        self.state[SETTLED_BEFORE] = settled.isoformat()
        for key, value in list(self.loaded.items()):
            if datetime.fromisoformat(value) < settled:
                del self.loaded[key]
