"""A table and state written by the previous version (0.1.0) continue with this one.

The fixture was made by that version's own code (`fixtures/make_previous_version_state.py`):
three backfill runs, then a first forward run four hours later, which left three hours of logs
that neither read. This version must carry the state forward, read that gap once, and load every
log exactly once.
"""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

from aig_source.emulator import StoredLog
from aig_source.state import BACKFILL_GAP, ORIGIN
from aig_source.timestamps import parse_ms

from .conftest import Workspace, merge_statements, stored_ids
from .test_backfill import backfill_until_done

FIXTURE = Path(__file__).parent / "fixtures" / "previous_version_state.tar.gz"


def restore_previous_version(workspace: Workspace) -> None:
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(workspace.root, filter="data")
    logs = json.loads(gzip.decompress((workspace.root / "logs.json.gz").read_bytes()))
    workspace.api.add_logs([StoredLog(**log) for log in logs])


def test_previous_versions_table_and_state_continue_without_gap_or_duplicate(
    workspace: Workspace,
) -> None:
    restore_previous_version(workspace)
    api = workspace.api
    before = set(workspace.ids())
    assert len(before) == 654 and len(stored_ids(api)) == 1200
    newest_ms = max(log.created_at_ms for log in api.gateway().store.snapshot())
    api.generate(40, start_ms=newest_ms + 1, end_ms=api.now_ms())  # logs since that version ran

    # a fresh machine, as on GitHub Actions: state comes from the DuckDB file
    workspace.run_until_caught_up(max_pages=50)
    state = workspace.pipeline().state["sources"]["aig_source"]
    backfill = state["resources"]["aig_logs_backfill"]
    forward_start = state["resources"]["aig_logs"]["incremental"]["created_at"]["initial_value"]
    assert parse_ms(state[ORIGIN]) == parse_ms(forward_start)
    assert parse_ms(backfill[BACKFILL_GAP]["low"]) == parse_ms(backfill["start"])

    summaries = backfill_until_done(workspace, max_pages=6)

    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 1240
    assert sorted(ids) == sorted(stored_ids(api))
    assert before <= set(ids)
    final = summaries[-1].state
    assert BACKFILL_GAP not in final and final["gone"] == 0
    # the table's schema, stored by that version without the merge hint, now carries it
    delete = [s for s in merge_statements(workspace.pipeline()) if s.startswith("DELETE")]
    assert delete and '"created_at" BETWEEN' in delete[0]
