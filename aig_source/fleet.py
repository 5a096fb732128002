"""Reading a fleet of gateways in one run: which gateways, each one's private progress, a bounded
number read at once through the token's one pacer, and failures kept to their own gateway.

Every gateway is read by its own worker on a private copy of its progress. The copy replaces the
gateway's state only when its read ended without an error, so a gateway that keeps failing keeps
the state it had (its next healthy run continues from there, and the merge on `id` absorbs any
of its rows this run already loaded), while the other gateways load and advance. Nothing is
committed before dlt commits the load, so a kill loses no gateway's progress either.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional

import dlt

from . import state
from .client import AigSourceError, GatewayNotFoundError, LogsApiClient, one_line
from .config import ConfigurationError
from .rows import to_row
from .settings import ALL_GATEWAYS, ENV_PREFIX
from .timestamps import format_ms, now_ms

logger = logging.getLogger(__name__)

Items = List[Dict[str, Any]]
ReadGateway = Callable[[LogsApiClient, state.State, int], Iterator[Items]]
"""Reads one gateway: its client, its private progress and its origin; yields pages of items."""

GATEWAY_THREAD_PREFIX = "aig-gateway:"
"""Threads reading a gateway are named after it."""
FAILED = "failed"
GONE = "gone"


def failure_lines(failed: Dict[str, str]) -> List[str]:
    """One line per failed gateway, naming it and the cause."""
    return [f"gateway {gateway_id}: {cause}" for gateway_id, cause in sorted(failed.items())]


class _Stopped(Exception):
    """The consumer went away (the extract failed or was closed): workers stop reading."""


_END = object()


@dataclass
class FleetRead:
    """One resource's read of every selected gateway in one run."""

    client: LogsApiClient
    gateway_ids: List[str]
    discovered: bool
    """True with `gateway_id = "*"`: the gateways were listed, so one answering 404 was deleted
    meanwhile (it is gone, not failed)."""
    progress: Dict[str, state.State]
    origins: Dict[str, int]
    max_concurrent: int
    gone: List[str] = field(default_factory=list)
    errors: Dict[str, BaseException] = field(default_factory=dict)
    """Why each failed gateway's read failed."""
    clients: Dict[str, LogsApiClient] = field(default_factory=dict)
    listing_requests: int = 0

    @property
    def failed(self) -> Dict[str, str]:
        """Each failed gateway's error as one line."""
        return {gateway_id: one_line(error) for gateway_id, error in self.errors.items()}

    def pages(self, read: ReadGateway) -> Iterator[Items]:
        """Pages of table rows of every gateway, as their reads produce them."""
        pages: queue.Queue[Any] = queue.Queue(maxsize=2 * self.max_concurrent)
        stop = threading.Event()

        def put(item: Any) -> None:
            while not stop.is_set():
                try:
                    pages.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue
            raise _Stopped()

        def work(gateway_id: str) -> None:
            # log lines of this read name its gateway (`runner.configure_logging`)
            threading.current_thread().name = f"{GATEWAY_THREAD_PREFIX}{gateway_id}"
            client = self.clients[gateway_id]
            private = copy.deepcopy(self.progress.get(gateway_id, {}))
            try:
                for items in read(client, private, self.origins[gateway_id]):
                    if items:
                        put(_rows(items, gateway_id, client.account_id))
                self.progress[gateway_id] = private
            except _Stopped:
                return
            except GatewayNotFoundError as error:
                if self.discovered:
                    logger.warning("gateway %s was deleted during the run", gateway_id)
                    self.gone.append(gateway_id)
                else:
                    self._fail(gateway_id, error)
            except Exception as error:  # a gateway's failure is reported, the others go on
                self._fail(gateway_id, error)
            try:
                put(_END)
            except _Stopped:
                return

        for gateway_id in self.gateway_ids:
            self.clients[gateway_id] = self.client.for_gateway(gateway_id)
        workers = ThreadPoolExecutor(
            max_workers=max(1, min(self.max_concurrent, len(self.gateway_ids))),
            thread_name_prefix="aig-gateway",
        )
        try:
            for gateway_id in self.gateway_ids:
                workers.submit(work, gateway_id)
            running = len(self.gateway_ids)
            while running:
                item = pages.get()
                if item is _END:
                    running -= 1
                else:
                    yield item
        finally:
            stop.set()
            workers.shutdown(wait=True)
        if self.errors and len(self.errors) == len(self.gateway_ids):
            # nothing to commit: the run fails as a whole and loads nothing
            if len(self.errors) == 1:
                raise next(iter(self.errors.values()))
            raise AigSourceError("\n".join(failure_lines(self.failed)))

    def _fail(self, gateway_id: str, error: BaseException) -> None:
        self.errors[gateway_id] = error
        logger.debug("gateway %s failed: %s", gateway_id, one_line(error))

    def outcome(self) -> Dict[str, Any]:
        """The run as a whole, kept in the resource's `last_run`."""
        return {
            "finished_at": format_ms(now_ms()),
            "gateways": list(self.gateway_ids),
            FAILED: dict(self.failed),
            GONE: sorted(self.gone),
            "api_requests": self.listing_requests
            + sum(client.requests_made for client in self.clients.values()),
            "rate_limited": sum(client.rate_limited for client in self.clients.values()),
        }


def _rows(items: Items, gateway_id: str, account_id: str) -> Items:
    ingested_at = datetime.now(timezone.utc)
    return [to_row(item, ingested_at, gateway_id, account_id) for item in items]


def open_fleet(
    client: LogsApiClient,
    configured: List[str],
    proposed_origin_ms: int,
    max_concurrent: int,
    only: Optional[List[str]] = None,
) -> FleetRead:
    """The gateways the resource being extracted reads now, with their progress and origins.

    With `*` the account's gateways are listed (paged to the end), so a gateway created since the
    last run is read from its origin on, and one deleted since leaves the list: its rows and
    state are kept and it is named among the `gone`. State of a single-gateway version is first
    carried over to the one gateway configured.
    """
    source_state = dlt.current.source_state()
    if state.has_single_gateway_state(source_state) and (
        configured == [ALL_GATEWAYS] or len(configured) != 1
    ):
        raise ConfigurationError(
            "This pipeline's state was written by a version that read one gateway and did"
            " not record which. Run once with"
            f" {ENV_PREFIX}GATEWAY_ID set to that gateway's id (its rows and progress are"
            f" then carried over to it), then set {ENV_PREFIX}GATEWAY_ID to"
            f" {','.join(configured)}."
        )
    state.carry_over_one_gateway(source_state, configured[0], client.account_id, proposed_origin_ms)
    progress = state.gateways_of(dlt.current.resource_state())
    discovered = configured == [ALL_GATEWAYS]
    gone: List[str] = []
    listing_requests = 0
    if discovered:
        before = client.requests_made
        gateway_ids = sorted(str(gateway["id"]) for gateway in client.list_gateways())
        listing_requests = client.requests_made - before
        gone = sorted(set(progress) - set(gateway_ids))
    else:
        gateway_ids = list(configured)
    if only is not None:
        gone = [gateway_id for gateway_id in gone if gateway_id in only]
        gateway_ids = [gateway_id for gateway_id in gateway_ids if gateway_id in only]
    origins = {
        gateway_id: state.fix_origin(source_state, gateway_id, proposed_origin_ms)
        for gateway_id in gateway_ids
    }
    return FleetRead(
        client=client,
        gateway_ids=gateway_ids,
        discovered=discovered,
        progress=progress,
        origins=origins,
        max_concurrent=max_concurrent,
        gone=gone,
        listing_requests=listing_requests,
    )
