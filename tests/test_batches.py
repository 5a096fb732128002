"""Rows handed to DuckDB as Arrow tables (`batches.py`) load exactly what dicts load, and a batch
Arrow cannot hold exactly goes as dicts; the merge skips its deduplicating window only for a
batch whose ids are unique."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Tuple

import dlt
import pytest

from aig_source import batches
from aig_source.destinations import duckdb as aig_duckdb
from aig_source.emulator import LogsApiEmulator
from aig_source.table import TABLE_HINTS, declare_table
from aig_source.timestamps import from_ms

from .conftest import Workspace, merge_statements

COMPARED = (
    "SELECT * EXCLUDE (_dlt_id, _dlt_load_id, ingested_at) FROM ai_gateway.aig_logs ORDER BY id"
)


def extracted_formats(pipeline: dlt.Pipeline) -> List[str]:
    """How the last extract wrote `aig_logs`: `parquet` from Arrow tables, `typed-jsonl` from
    dicts."""
    info = pipeline.last_trace.last_extract_info
    assert info is not None
    names = [
        metrics.file_path.rsplit("/", 1)[-1]
        for load_id in info.loads_ids
        for metrics in info.metrics[load_id][0]["job_metrics"].values()
    ]
    return sorted(
        {
            "parquet" if ".parquet" in name else "typed-jsonl"
            for name in names
            if name.startswith("aig_logs.")
        }
    )


def columns_of(workspace: Workspace) -> List[Tuple[str, str]]:
    """The table's columns and types, in their order."""
    return workspace.query(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'ai_gateway' AND table_name = 'aig_logs' ORDER BY ordinal_position"
    )


def odd_logs(api: LogsApiEmulator, start_ms: int) -> None:
    """Logs with every shape of value a row can have: nested, empty, unicode, extremes, and
    metadata that is not JSON (kept as text in `metadata_raw`)."""
    shapes: List[Tuple[str, Any]] = [
        ("metadata", json.dumps({"user": "ü_1", "nested": {"a": [1, 2.5, None]}, "t": True})),
        ("metadata", json.dumps([1, "two"])),
        ("metadata", "not json at all"),
        ("metadata", ""),
        ("metadata", json.dumps({"big": 2**70})),
        ("tokens_in", 2**62),
        ("cost", 0),
        ("model", "模型-🚀"),
        ("success", None),
    ]
    logs = []
    for index, (field, value) in enumerate(shapes):
        log = api.make_log(start_ms + index * 1_000)
        log.fields[field] = value
        logs.append(log)
    api.add_logs(logs)


def test_arrow_tables_load_the_same_values_and_types_as_dicts(
    tmp_path: Any, api: LogsApiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three runs into two tables, one through Arrow where it can, one through dicts only."""
    monkeypatch.setattr(batches, "ARROW_BATCH_ROWS", 300)  # several tables per run
    arrow, dicts = Workspace(tmp_path / "arrow", api), Workspace(tmp_path / "dicts", api)
    formats: List[List[str]] = []
    runs = [
        lambda: api.generate(700, hours=0.5),
        lambda: odd_logs(api, api.now_ms() - 20_000),  # metadata_raw is new: dicts
        lambda: (api.generate(50, hours=0.01), odd_logs(api, api.now_ms() - 10_000)),
    ]
    for add_logs in runs:
        add_logs()
        arrow.run()
        formats.append(extracted_formats(arrow.pipeline()))
        with monkeypatch.context() as no_arrow:
            no_arrow.setattr(batches, "ARROW_DESTINATIONS", ())
            dicts.run()
            assert extracted_formats(dicts.pipeline()) == ["typed-jsonl"]

    assert formats == [["parquet"], ["typed-jsonl"], ["parquet"]]
    assert columns_of(arrow) == columns_of(dicts)
    # dlt's schema too, but for `nullable`: Arrow states the default (True) that hints leave out
    hints = ("data_type", "precision", "scale", "timezone", "primary_key", "description")
    arrow_schema, dict_schema = (
        {
            name: {h: column.get(h) for h in hints} | {"nullable": column.get("nullable", True)}
            for name, column in w.pipeline().default_schema.get_table_columns("aig_logs").items()
        }
        for w in (arrow, dicts)
    )
    assert arrow_schema == dict_schema
    arrow_rows, dict_rows = arrow.query(COMPARED), dicts.query(COMPARED)
    assert len(arrow_rows) == 768
    assert arrow_rows == dict_rows
    raw = [row[0] for row in arrow.query("SELECT metadata_raw FROM ai_gateway.aig_logs")]
    assert raw.count("not json at all") == 2
    # the JSON text of a 70-bit integer, which orjson refuses, is still exact
    big = arrow.query(
        "SELECT CAST(metadata AS VARCHAR) FROM ai_gateway.aig_logs"
        " WHERE metadata->>'big' IS NOT NULL"
    )
    assert [json.loads(row[0]) for row in big] == [{"big": 2**70}] * 2


def test_a_field_no_load_has_typed_goes_as_dicts_once_then_as_arrow(
    workspace: Workspace, api: LogsApiEmulator
) -> None:
    api.generate(30, hours=0.2)
    workspace.run()
    assert extracted_formats(workspace.pipeline()) == ["parquet"]

    new_field = api.make_log(api.now_ms() - 2_000)
    new_field.fields["dlp_score"] = 7
    api.add_logs([new_field])
    workspace.run()
    assert extracted_formats(workspace.pipeline()) == ["typed-jsonl"]

    typed = api.make_log(api.now_ms() - 1_000)
    typed.fields["dlp_score"] = 9
    api.add_logs([typed])
    workspace.run()
    assert extracted_formats(workspace.pipeline()) == ["parquet"]
    assert dict(columns_of(workspace))["dlp_score"] == "BIGINT"
    scores = dict(workspace.query("SELECT id, dlp_score FROM ai_gateway.aig_logs"))
    assert scores[new_field.id] == 7 and scores[typed.id] == 9


def test_a_value_of_another_type_goes_as_dicts_and_gets_dlts_variant_column(
    workspace: Workspace, api: LogsApiEmulator
) -> None:
    first = api.make_log(api.now_ms() - 3_000)
    first.fields["dlp_score"] = 7
    api.add_logs([first])
    workspace.run()

    text = api.make_log(api.now_ms() - 1_000)
    text.fields["dlp_score"] = "high"
    flag = api.make_log(api.now_ms() - 500)
    flag.fields["dlp_score"] = True
    api.add_logs([text, flag])
    workspace.run()

    assert extracted_formats(workspace.pipeline()) == ["typed-jsonl"]
    row = workspace.query(
        f"SELECT dlp_score, dlp_score__v_text FROM ai_gateway.aig_logs WHERE id = '{text.id}'"
    )
    assert row == [(None, "high")]


def test_no_pipeline_or_bigquery_gets_pages_of_dicts() -> None:
    pages = [[{"id": "a"}], [{"id": "b"}]]
    assert list(batches.rows_for_load(iter(pages))) == pages


def logs(ids: List[str]) -> Iterator[List[Dict[str, Any]]]:
    yield [
        {"id": log_id, "created_at": from_ms(1_764_000_000_000 + n * 1000), "model": log_id}
        for n, log_id in enumerate(ids)
    ]


@pytest.mark.parametrize(
    ("ids", "deduplicated"), [(["a", "b", "c"], True), (["a", "b", "a"], False)]
)
def test_the_merge_skips_deduplication_only_for_unique_ids(
    tmp_path: Any, ids: List[str], deduplicated: bool
) -> None:
    pipeline = dlt.pipeline(
        "dedup",
        destination=aig_duckdb(str(tmp_path / "dedup.duckdb")),
        dataset_name="ai_gateway",
        pipelines_dir=str(tmp_path),
    )
    resource = declare_table(dlt.resource(logs, name="aig_logs", **TABLE_HINTS)(["x"]))
    pipeline.run(resource)
    resource = declare_table(dlt.resource(logs, name="aig_logs", **TABLE_HINTS)(ids))
    pipeline.run(resource)

    insert = next(s for s in merge_statements(pipeline) if "INSERT INTO" in s)
    assert ("_dlt_dedup_rn" not in insert) is deduplicated
    with pipeline.sql_client() as client:
        stored = client.execute_sql("SELECT id FROM aig_logs ORDER BY id")
    assert [row[0] for row in stored] == sorted({"x", *ids})


def test_a_forward_run_through_arrow_prints_no_dlt_warning(workspace: Workspace) -> None:
    """The one difference dlt sees between an Arrow table and the declared columns (`metadata`
    arrives as JSON text) is expected, so its warning is not printed."""
    workspace.api.generate(40, hours=0.1)
    result = workspace.script()
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr and "arrow" not in result.stderr.lower()
    assert workspace.query("SELECT count(*) FROM ai_gateway.aig_logs") == [(40,)]
