"""Against real BigQuery, only when credentials are given: set AIG_LIVE_BIGQUERY_CREDENTIALS to a
service-account JSON (BigQuery Data Editor + Job User on its project). A dataset named
`aig_live_<random>` is created and dropped. Skipped otherwise: the suite never leaves loopback."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import dlt
import pytest

from aig_source import destinations
from aig_source.jobs.forward import run_forward
from aig_source.runner import make_pipeline

from .bigquery_emulator import query
from .conftest import Workspace

LIVE_CREDENTIALS = os.environ.get("AIG_LIVE_BIGQUERY_CREDENTIALS", "")

pytestmark = pytest.mark.skipif(
    not LIVE_CREDENTIALS,
    reason="live BigQuery test: set AIG_LIVE_BIGQUERY_CREDENTIALS to a service-account JSON",
)


@dataclass
class LiveDataset:
    """A throwaway dataset on real BigQuery, its client, and a pipeline loading into it."""

    client: Any
    project: str
    name: str
    pipeline: dlt.Pipeline

    def qualified(self, table: str) -> str:
        return f"{self.project}.{self.name}.{table}"


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveDataset]:
    from google.cloud import bigquery as google_bigquery
    from google.oauth2 import service_account

    monkeypatch.setenv("DESTINATION__BIGQUERY__CREDENTIALS", LIVE_CREDENTIALS)
    dataset = f"aig_live_{uuid.uuid4().hex[:10]}"
    info = json.loads(LIVE_CREDENTIALS)
    client = google_bigquery.Client(
        project=info["project_id"],
        credentials=service_account.Credentials.from_service_account_info(info),
    )
    pipeline = make_pipeline(
        destination=destinations.bigquery(),
        pipelines_dir=str(tmp_path / "pipelines"),
        dataset_name=dataset,
    )
    try:
        yield LiveDataset(client, info["project_id"], dataset, pipeline)
    finally:
        client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
        client.delete_dataset(f"{dataset}_staging", delete_contents=True, not_found_ok=True)


def test_forward_runs_on_real_bigquery(workspace: Workspace, live: LiveDataset) -> None:
    workspace.api.generate(200, hours=0.5)
    run_forward(live.pipeline, **workspace.source_args())
    run_forward(live.pipeline, **workspace.source_args())

    assert query(live.pipeline, "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM {table}") == [
        (200, 200)
    ]
    table = live.client.get_table(live.qualified("aig_logs"))
    assert table.time_partitioning.field == "created_at"
    assert table.clustering_fields == ["provider", "model", "success", "id"]


def test_a_view_filtered_by_day_reads_only_that_days_partition(
    workspace: Workspace, live: LiveDataset
) -> None:
    """What the offline SQL checks claim, asked of BigQuery itself: a dry run of a view filtered
    to one day processes fewer bytes than the same query unfiltered."""
    from google.cloud import bigquery as google_bigquery

    from aig_source.views import VIEW_NAMES

    workspace.api.generate(600, hours=96)
    for _ in range(10):
        if not run_forward(
            live.pipeline, **workspace.source_args(forward_start="5d")
        ).page_budget_reached:
            break
    dry = google_bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
    for view in VIEW_NAMES:
        name = f"`{live.qualified(view)}`"
        whole = live.client.query(f"SELECT * FROM {name}", job_config=dry)
        one_day = live.client.query(
            f"SELECT * FROM {name} WHERE day = CURRENT_DATE()", job_config=dry
        )
        assert 0 < one_day.total_bytes_processed < whole.total_bytes_processed, view
