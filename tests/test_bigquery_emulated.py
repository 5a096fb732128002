"""End to end through dlt's real BigQuery destination into `bqemulator` on 127.0.0.1.

What this proves: datasets and staging datasets are created, the DDL runs, jsonl load jobs land,
the range-bounded merge executes (no duplicate ids, updated rows replaced), new API fields become
columns, and the state round-trips through BigQuery. What it cannot prove: partition pruning and
clustering (the emulator accepts and drops them), so those are covered by the offline SQL tests.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, List, Tuple

import dlt
import pytest

from aig_source.jobs.backfill import run_backfill
from aig_source.jobs.forward import run_forward
from aig_source.jobs.reconcile import run_reconcile
from aig_source.jobs.report import write_report
from aig_source.runner import describe_failure

from .bigquery_emulator import EmulatedBigQuery, query
from .conftest import Workspace, merge_statements
from .insight import GATEWAYS, check_views, iso, load_history, utc_day

pytest.importorskip("google.cloud.bigquery", reason="needs the bigquery extra")
pytestmark = pytest.mark.slow


def counts(pipeline: dlt.Pipeline) -> tuple:
    rows = query(pipeline, "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM {table}")
    return rows[0]


def test_forward_runs_merge_into_bigquery_exactly_once(
    workspace: Workspace, bigquery: EmulatedBigQuery, tmp_path: Path
) -> None:
    api = workspace.api
    first_logs = api.generate(120, hours=0.5)
    pipeline = bigquery.pipeline(tmp_path)

    first = run_forward(pipeline, **workspace.source_args())

    assert first.logs_new == 120
    assert counts(pipeline) == (120, 120)
    delete = next(s for s in merge_statements(pipeline) if s.startswith("DELETE"))
    oldest = min(log.created_at_ms for log in first_logs) // 1000
    assert "d.`created_at` BETWEEN TIMESTAMP '" in delete
    assert f"TIMESTAMP '{_utc_second(oldest)}'" in delete

    # second run: new logs, the newest row re-read (overlap), one row's fields updated, and a
    # field the API did not send before
    newest = api.gateway().store.snapshot()[-1]
    newest.fields["metadata"] = json.dumps({"patched": True, "n": 2})
    newest.fields["cost"] = 0.5
    later = api.generate(30, start_ms=newest.created_at_ms + 1, end_ms=api.now_ms() + 1)
    later[-1].fields["gateway_region"] = "weur"

    second = run_forward(pipeline, **workspace.source_args())

    assert second.logs_fetched > second.logs_new == 30
    assert counts(pipeline) == (150, 150)
    patched = query(
        pipeline,
        f"SELECT TO_JSON_STRING(metadata) AS metadata, cost FROM {{table}}"
        f" WHERE id = '{newest.id}'",
    )
    assert len(patched) == 1
    assert json.loads(patched[0][0]) == {"patched": True, "n": 2} and patched[0][1] == 0.5
    # the re-read row was inside the second merge's constant range, so it was replaced
    delete = next(s for s in merge_statements(pipeline) if s.startswith("DELETE"))
    assert f"BETWEEN TIMESTAMP '{_utc_second(newest.created_at_ms // 1000)}'" in delete
    regions = query(
        pipeline, "SELECT id, gateway_region FROM {table} WHERE gateway_region IS NOT NULL"
    )
    assert regions == [(later[-1].id, "weur")]

    # a fresh pipelines folder restores the cursor from BigQuery's state table
    restored = bigquery.pipeline(tmp_path / "fresh", dataset=pipeline.dataset_name)
    third = run_forward(restored, **workspace.source_args())
    assert third.logs_new == 0 and counts(restored) == (150, 150)


def test_backfill_into_bigquery_after_forward(
    workspace: Workspace, bigquery: EmulatedBigQuery, tmp_path: Path
) -> None:
    api = workspace.api
    api.generate(200, hours=3)
    pipeline = bigquery.pipeline(tmp_path)
    run_forward(pipeline, **workspace.source_args())
    forward_rows = counts(pipeline)[0]
    assert 0 < forward_rows < 200

    summary = run_backfill(pipeline, **workspace.source_args())

    assert summary.state.get("done")
    assert counts(pipeline) == (200, 200)


def _utc_second(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).isoformat(sep=" ")


def test_permission_denied_names_the_roles_and_loses_nothing(
    workspace: Workspace, bigquery_denying_access: EmulatedBigQuery, tmp_path: Path
) -> None:
    workspace.api.generate(20, hours=0.5)
    pipeline = bigquery_denying_access.pipeline(tmp_path, dataset="ai_gateway")

    with pytest.raises(Exception) as failure:
        run_forward(pipeline, **workspace.source_args())

    message = describe_failure(failure.value)
    assert message.startswith("BigQuery denied access (Access Denied: Project aig-emulated")
    assert "BigQuery Data Editor" in message and "BigQuery Job User" in message
    assert "\n" not in message
    # nothing was committed: the cursor is still unset, so the next run starts where this one did
    assert "aig_logs" not in str(pipeline.state.get("sources", {}))


def test_missing_project_fails_with_one_line_naming_the_setting(workspace: Workspace) -> None:
    workspace.api.generate(5, hours=0.5)
    # Application Default Credentials of a user who never chose a project (gcloud auth
    # application-default login); the refresh token is never used because the run stops first
    adc = workspace.root / "adc.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "aig-test.apps.googleusercontent.com",
                "client_secret": "adc-client-secret-7f3c",
                "refresh_token": "adc-refresh-token-91ab",
            }
        )
    )
    env = workspace.env(
        DESTINATION_TYPE="bigquery",
        GOOGLE_APPLICATION_CREDENTIALS=str(adc),
        CLOUDSDK_CONFIG=str(workspace.root / "gcloud"),
    )
    for name in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "DESTINATION__DUCKDB__CREDENTIALS"):
        env.pop(name, None)

    result = workspace.script(env=env)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: BigQuery project unknown"), result.stderr
    assert "DESTINATION__BIGQUERY__PROJECT_ID" in lines[-1]
    output = result.stdout + result.stderr
    assert "adc-refresh-token-91ab" not in output and "adc-client-secret-7f3c" not in output


def test_two_gateways_into_bigquery_carry_their_ids_and_merge_bounded(
    workspace: Workspace, bigquery: EmulatedBigQuery, tmp_path: Path
) -> None:
    api = workspace.api
    api.add_gateway("app-b")
    api.generate(90, hours=0.5)
    api.generate(60, hours=0.5, gateway_id="app-b")
    pipeline = bigquery.pipeline(tmp_path)

    first = run_forward(pipeline, **workspace.source_args(gateway_id="*"))

    assert first.logs_new == 150 and set(first.gateways) == {"demo-gateway", "app-b"}
    per_gateway = query(
        pipeline,
        "SELECT gateway_id, account_id, COUNT(*) AS n FROM {table} GROUP BY 1, 2 ORDER BY 1",
    )
    assert [tuple(row) for row in per_gateway] == [
        ("app-b", workspace.source_args()["account_id"], 60),
        ("demo-gateway", workspace.source_args()["account_id"], 90),
    ]
    newest = max(log.created_at_ms for log in api.gateway("app-b").store.snapshot())
    api.generate(20, start_ms=newest + 1, end_ms=api.now_ms() + 1, gateway_id="app-b")

    second = run_forward(pipeline, **workspace.source_args(gateway_id="*"))

    assert second.logs_new == 20 and counts(pipeline) == (170, 170)
    delete = next(s for s in merge_statements(pipeline) if s.startswith("DELETE"))
    assert "d.`created_at` BETWEEN TIMESTAMP '" in delete


def test_rows_of_an_older_version_are_filled_in_bigquery_by_one_update(
    workspace: Workspace, bigquery: EmulatedBigQuery, tmp_path: Path
) -> None:
    from aig_source.state import ROWS_TO_FILL

    api = workspace.api
    api.generate(50, hours=0.5)
    pipeline = bigquery.pipeline(tmp_path)
    run_forward(pipeline, **workspace.source_args())
    # what a table of the single-gateway version looks like once dlt added the two columns
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("aig_logs")
        client.execute_sql(f"UPDATE {table} SET gateway_id = NULL, account_id = NULL WHERE TRUE")
    with pipeline.managed_state(extract_state=True) as state:
        state["sources"]["aig_source"][ROWS_TO_FILL] = {
            "gateway_id": "demo-gateway",
            "account_id": workspace.source_args()["account_id"],
        }
    pipeline.normalize()
    pipeline.load()

    run_forward(pipeline, **workspace.source_args())

    filled = query(pipeline, "SELECT gateway_id, COUNT(*) AS n FROM {table} GROUP BY 1")
    assert [tuple(row) for row in filled] == [("demo-gateway", 50)]
    assert ROWS_TO_FILL not in pipeline.state["sources"]["aig_source"]


def test_views_on_bigquery_hold_the_figures_of_the_loaded_logs(
    workspace: Workspace, bigquery: EmulatedBigQuery, tmp_path: Path
) -> None:
    start, logged = load_history(workspace.api)
    pipeline = bigquery.pipeline(tmp_path)
    args = workspace.source_args(gateway_id=",".join(GATEWAYS), forward_start=iso(start - 1000))
    for _ in range(10):
        if not run_forward(pipeline, **args).page_budget_reached:
            break

    def fetch(sql: str) -> List[Tuple[Any, ...]]:
        with pipeline.sql_client() as client:
            dataset = client.fully_qualified_dataset_name()
            return [tuple(row) for row in client.execute_sql(sql.format(dataset=dataset)) or []]

    assert fetch("SELECT COUNT(*) FROM {dataset}.aig_logs") == [(len(logged),)]
    # the same views as on DuckDB, APPROX_QUANTILES for the percentiles
    check_views(fetch, logged, exact_percentiles=False)

    # the report reads the same views on BigQuery
    summary = write_report(pipeline, str(tmp_path / "report.html"), progress=lambda line: None)
    headline = summary.figures["headline"]
    in_period = [
        log for _, log in logged if utc_day(log.created_at_ms) >= summary.figures["period"]["start"]
    ]
    assert headline["requests"] == len(in_period)
    assert headline["cost"] == pytest.approx(sum(log.fields.get("cost") or 0 for log in in_period))


def test_reconcile_on_bigquery_loads_what_the_table_lacks_with_a_bounded_merge(
    workspace: Workspace, bigquery: EmulatedBigQuery, tmp_path: Path
) -> None:
    stored = workspace.api.generate(300, hours=20)
    pipeline = bigquery.pipeline(tmp_path)
    for _ in range(10):
        if not run_forward(
            pipeline, **workspace.source_args(forward_start="21h")
        ).page_budget_reached:
            break
    lost = [stored[10], stored[150], stored[290]]
    ids = ", ".join(f"'{log.id}'" for log in lost)
    query(pipeline, f"DELETE FROM {{table}} WHERE id IN ({ids})")
    assert counts(pipeline) == (297, 297)
    stored[20].feedback, stored[150].feedback = 1, -1

    summary = run_reconcile(pipeline, since="24h", **workspace.source_args())

    assert summary.totals["demo-gateway"]["logs_missing_loaded"] == 3
    assert summary.problem() is None
    assert counts(pipeline) == (300, 300)
    feedback = query(pipeline, "SELECT id, feedback FROM {table} WHERE feedback IS NOT NULL")
    assert sorted(feedback) == sorted([(stored[20].id, 1), (stored[150].id, -1)])
    delete = next(s for s in merge_statements(pipeline) if s.startswith("DELETE"))
    assert "d.`created_at` BETWEEN TIMESTAMP '" in delete
