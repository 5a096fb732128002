"""dlt's real BigQuery destination against `bqemulator` (DuckDB-backed) on 127.0.0.1.

The emulator runs in this process on ephemeral loopback ports for the whole session. Two things
make it work offline: DuckDB's `spatial` extension, which the emulator loads at start-up, comes
from the `duckdb-extension-spatial` wheel instead of a download, and Google's default
credentials are anonymous (the emulator checks none). Load files are written uncompressed
because the emulator cannot read gzip (real BigQuery can).
"""

from __future__ import annotations

import json
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple, Union

import dlt
import pytest

from aig_source import destinations
from aig_source.runner import make_pipeline

PROJECT = "aig-emulated"


def spatial_extension_path() -> Path:
    import duckdb
    import duckdb_extension_spatial

    version = duckdb.__version__
    path = (
        Path(duckdb_extension_spatial.__file__).parent
        / "extensions"
        / f"v{version}"
        / "spatial.duckdb_extension"
    )
    if not path.exists():
        pytest.fail(f"duckdb-extension-spatial does not match duckdb {version}: {path} missing")
    return path


@dataclass
class EmulatedBigQuery:
    rest_url: str

    def pipeline(self, root: Path, dataset: str = "") -> dlt.Pipeline:
        return make_pipeline(
            destination=destinations.bigquery(location="US"),
            pipelines_dir=str(root / "pipelines"),
            dataset_name=dataset or f"aig_{uuid.uuid4().hex[:10]}",
        )


def query(pipeline: dlt.Pipeline, sql: str) -> List[Tuple[Any, ...]]:
    """Runs `sql` with `{table}` replaced by the qualified `aig_logs` table."""
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("aig_logs")
        rows = client.execute_sql(sql.format(table=table))
    return [tuple(row) for row in rows or []]


@pytest.fixture(scope="session")
def bigquery_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("bqemulator", reason="needs the dev extra (bqemulator)")
    from bqemulator.config import PersistenceMode, Settings
    from bqemulator.storage.engine import DuckDBEngine
    from bqemulator.testing._thread_runner import ThreadedEmulator

    spatial = spatial_extension_path()

    def load_spatial_from_wheel(engine: DuckDBEngine) -> None:
        engine.connection.execute(f"LOAD '{spatial}'")

    settings = Settings(
        persistence_mode=PersistenceMode.EPHEMERAL,
        rest_host="127.0.0.1",
        rest_port=0,
        grpc_host="127.0.0.1",
        grpc_port=0,
        default_project_id=PROJECT,
        enable_format_extensions=False,
        upload_staging_dir=tmp_path_factory.mktemp("bqemulator_uploads"),
        log_level="warning",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DuckDBEngine, "_load_spatial", load_spatial_from_wheel)
        emulator = ThreadedEmulator(settings)
        try:
            emulator.start()
            yield f"http://127.0.0.1:{emulator.server.rest_port}"
        finally:
            emulator.stop()


def use_bigquery_endpoint(monkeypatch: pytest.MonkeyPatch, url: str) -> EmulatedBigQuery:
    """Points dlt's BigQuery destination at `url` with anonymous default credentials."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", url)
    monkeypatch.setattr(
        google.auth, "default", lambda *args, **kwargs: (AnonymousCredentials(), PROJECT)
    )
    monkeypatch.setenv("DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID", PROJECT)
    return EmulatedBigQuery(url)


@pytest.fixture
def bigquery(bigquery_server: str, monkeypatch: pytest.MonkeyPatch) -> EmulatedBigQuery:
    monkeypatch.setenv("NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION", "true")
    return use_bigquery_endpoint(monkeypatch, bigquery_server)


@contextmanager
def answering(status: int, body: Union[Dict[str, Any], str]) -> Iterator[str]:
    """A loopback HTTP server answering every request with `status` and `body` (JSON, or HTML
    when a string); yields its base URL. Stands for an endpoint refusing the caller."""
    encoded = (json.dumps(body) if isinstance(body, dict) else body).encode()
    content_type = "application/json" if isinstance(body, dict) else "text/html"

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


ACCESS_DENIED = {
    "error": {
        "code": 403,
        "message": f"Access Denied: Project {PROJECT}: User does not have"
        f" bigquery.jobs.create permission in project {PROJECT}.",
        "errors": [{"reason": "accessDenied", "message": "Access Denied"}],
        "status": "PERMISSION_DENIED",
    }
}
"""BigQuery's answer to a service account without the loading roles."""


@pytest.fixture
def bigquery_denying_access(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatedBigQuery]:
    """A loopback BigQuery endpoint that answers every call with 403 Access Denied."""
    with answering(403, ACCESS_DENIED) as url:
        yield use_bigquery_endpoint(monkeypatch, url)
