"""The Logpush job: the bucket's new files into `aig_logs`, in loads of `files_per_load` files
until none is left; files that cannot be read are named, and read again by the next run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set

import dlt

from ..logpush import logpush_files
from ..logpush.decrypt import UNWRAP_FAILED, key_mismatch_line
from ..logpush.settings import LOGPUSH_RESOURCE
from ..runner import rows_before_run, run_resource
from ..settings import ORIGIN_COLUMNS
from ..state import LAST_RUN
from ..table import table_declared
from ..upgrade import add_missing_columns

MAX_LOADS = 10_000
"""A guard: a run never loops forever on a bucket that keeps growing while it reads."""


@dataclass
class LogpushSummary:
    """One run of the Logpush job over all its loads."""

    pipeline_name: str
    bucket_url: str = ""
    loads: int = 0
    files_listed: int = 0
    files_loaded: int = 0
    records: int = 0
    new_rows: int = 0
    rsa_operations: int = 0
    gateways: Dict[str, int] = field(default_factory=dict)
    failed: Dict[str, str] = field(default_factory=dict)
    gone: List[str] = field(default_factory=list)

    def add(self, run: Dict[str, Any], new_rows: int) -> None:
        self.loads += 1
        self.bucket_url = run.get("bucket_url", self.bucket_url)
        self.files_listed = max(self.files_listed, int(run.get("files_listed", 0)))
        self.files_loaded += int(run.get("files_loaded", 0))
        self.records += int(run.get("records", 0))
        # another pipeline loading into the table at the same moment can add to its growth
        self.new_rows += min(new_rows, int(run.get("records", 0)))
        self.rsa_operations += int(run.get("rsa_operations", 0))
        for gateway_id, count in run.get("gateways", {}).items():
            self.gateways[gateway_id] = self.gateways.get(gateway_id, 0) + int(count)
        self.failed.update(run.get("failed", {}))
        self.gone = sorted(set(self.gone) | set(run.get("gone", ())))

    def line(self) -> str:
        merged = max(0, self.records - self.new_rows)
        text = (
            f"{self.pipeline_name} logpush: {self.records:,} records from {self.files_loaded:,}"
            f" new files of {self.files_listed:,} in {self.bucket_url} ({self.new_rows:,} new"
            f" logs, {merged:,} already loaded and merged) in {self.loads:,}"
            f" load{'s' if self.loads != 1 else ''}"
        )
        if not self.files_listed:
            text += (
                "; no Logpush files there yet: check that the Logpush job writes to this path"
                " (and file_glob, if set)"
            )
        if self.gateways:
            parts = ", ".join(f"{gw} {count:,}" for gw, count in sorted(self.gateways.items()))
            text += (
                f"; {len(self.gateways)} gateway{'s' if len(self.gateways) != 1 else ''}: {parts}"
            )
        if self.gone:
            text += f"; {len(self.gone)} failed file(s) deleted from the bucket since, forgotten"
        if self.failed:
            text += f"; {len(self.failed)} file(s) failed (see below)"
        return text + "."

    def problem(self) -> Optional[str]:
        if not self.failed:
            return None
        if self.rsa_operations == 0 and all(
            cause.endswith(UNWRAP_FAILED) for cause in self.failed.values()
        ):
            # not one field decrypted: the key, not the files
            return key_mismatch_line()
        return "\n".join(
            f"logpush file {key}: {cause}; it is not marked loaded, the next run reads it again."
            for key, cause in sorted(self.failed.items())
        )


def run_logpush(pipeline: dlt.Pipeline, **source_args: Any) -> LogpushSummary:
    """Loads the bucket's new Logpush files and summarises the run.

    Args:
        pipeline: The `aig_logs` pipeline (`runner.make_pipeline`).
        **source_args: Settings of `logpush_files` over the configuration.

    Returns:
        The run's summary.
    """
    rows_before = rows_before_run(pipeline)  # syncs, and stops if aig_logs is the Worker's
    if table_declared(pipeline):
        # a table of the single-gateway version: the views need these even before a row lands
        add_missing_columns(pipeline, ORIGIN_COLUMNS)
    summary = LogpushSummary(pipeline.pipeline_name)
    tried: Set[str] = set()
    for _ in range(MAX_LOADS):
        source = logpush_files(exclude=frozenset(tried), **source_args)
        loaded = run_resource(pipeline, source, LOGPUSH_RESOURCE, rows_before)
        rows_before = loaded.rows_after
        run = loaded.state.get(LAST_RUN, {})
        summary.add(run, loaded.new_rows)
        tried.update(run.get("failed", {}))
        if not run.get("files_pending") or not (run.get("files_loaded") or run.get("failed")):
            break
    return summary
