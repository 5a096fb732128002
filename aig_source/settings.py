"""Constants of the AI Gateway logs source."""

from typing import Dict

from dlt.common.schema.typing import TColumnSchema

DEFAULT_API_BASE_URL = "https://api.cloudflare.com/client/v4"
GATEWAYS_PATH = "/accounts/{account_id}/ai-gateway/gateways"
GATEWAY_PATH = GATEWAYS_PATH + "/{gateway_id}"
GATEWAYS_PER_PAGE = 100
"""The gateway list's largest page (its default is 20)."""
GATEWAY_LIST_ATTEMPTS = 3
"""Reads of the gateway list when it changes while it is paged."""
LOGS_PATH = GATEWAY_PATH + "/logs"
LOGPUSH_FIELDS_PATH = "/accounts/{account_id}/logpush/datasets/ai_gateway_events/fields"
"""The Logpush dataset's field list (name to description), compared by `setup.py --check`."""
TOKEN_VERIFY_PATH = "/user/tokens/verify"
ACCOUNT_TOKEN_VERIFY_PATH = "/accounts/{account_id}/tokens/verify"

MAX_PER_PAGE = 50
"""The Logs API refuses `per_page` above 50 (400, code 7001)."""
DEFAULT_PER_PAGE = MAX_PER_PAGE
DEFAULT_FORWARD_MAX_PAGES = 20
DEFAULT_LOOKBACK_SECONDS = 300
DEFAULT_FRESHNESS_THRESHOLD_SECONDS = 3600.0
"""A forward run ending more than an hour behind the gateway's newest log fails the job."""
DEFAULT_BACKFILL_MAX_PAGES = 40
BACKFILL_CHUNK_PAGES = 100
"""Pages loaded per commit in a long backfill run: bounds memory and what a kill can lose."""
DEFAULT_RATE_LIMIT_REQUESTS = 800
DEFAULT_RATE_LIMIT_WINDOW_SECONDS = 300.0
"""Cloudflare allows 1,200 requests per 300 s per token; 800 leaves a third for the dashboard,
setup checks and the other job, and still backfills about 130 logs/s."""
DEFAULT_MAX_CONCURRENT_GATEWAYS = 4
"""Gateways read at once: when the API's latency dominates, N gateways take about the time of
the slowest instead of the sum; every request still goes through the token's one pacer."""
ALL_GATEWAYS = "*"
"""`gateway_id` value meaning every gateway of the account, listed again on every run."""
DEFAULT_FORWARD_START = "1h"
"""Where the first job to run splits the history: the forward resource reads newer logs, the
backfill older ones (`forward_start`: a duration before that run, or a timestamp)."""

DEFAULT_LOG_LEVEL = "INFO"
"""Level of the pipeline's own log lines on stderr (late logs found, pacing, backfill progress);
dlt's own logging follows `[runtime] log_level`."""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

TIE_MAX_PASSES = 20
"""Passes over one over-full millisecond whose pages disagree with `total_count`: passes go on
while they find new ids, up to this many; a millisecond still incomplete then fails the run."""
TIE_IDLE_PASSES = 5
"""Passes in a row finding no new id that end the re-reading early. With a random order a pass
misses a given unseen id with a chance of about 1/e, so one idle pass is no proof; five in a row
stop early by chance less than 1% of the time, and then the run fails loudly and the next run
reads the millisecond again, so nothing is lost either way."""

DEFAULT_DESTINATION = "aig_source.destinations.duckdb"
"""dlt destination reference used when `destination_type` is unset (see `destinations`)."""

DUCKDB_LOCK_WAIT_SECONDS = 300.0
"""How long a load waits for a DuckDB file another process (another account's pipeline) holds."""

PIPELINE_NAME = "aig_logs"
DATASET_NAME = "ai_gateway"
TABLE_NAME = "aig_logs"
SOURCE_SECTION = "aig_source"
FORWARD_RESOURCE = "aig_logs"
BACKFILL_RESOURCE = "aig_logs_backfill"
RECONCILE_RESOURCE = "aig_logs_reconcile"
CURSOR_FIELD = "created_at"

LOADER_FILE_FORMATS: Dict[str, str] = {"duckdb": "parquet", "bigquery": "jsonl"}
"""parquet keeps DuckDB loads small and fast and stores `metadata` as exact JSON text; BigQuery
cannot load JSON columns from parquet, so it gets jsonl."""
DEFAULT_LOADER_FILE_FORMAT = "jsonl"
ARROW_DESTINATIONS = tuple(name for name, fmt in LOADER_FILE_FORMATS.items() if fmt == "parquet")
"""Destinations the sources hand Arrow tables to (see `batches.py`): those loading parquet
(DuckDB, JSON as text); BigQuery loads a JSON column only from jsonl, so it gets dicts."""
ARROW_BATCH_ROWS = 5_000
"""Rows per Arrow table: large enough that per-table costs vanish, small enough to hold lightly."""

LOG_COLUMNS: Dict[str, TColumnSchema] = {
    "id": {"data_type": "text", "nullable": False, "description": "Log id (ULID, later UUIDv7)"},
    # nullable in the schema only because neither dlt nor BigQuery can add a NOT NULL column to
    # a table that has rows; every row has both (the upgrade fills older rows, see `upgrade.py`)
    "gateway_id": {"data_type": "text", "description": "AI Gateway id (slug) the log belongs to"},
    "account_id": {"data_type": "text", "description": "Cloudflare account id of the gateway"},
    "created_at": {
        "data_type": "timestamp",
        "timezone": True,
        "nullable": False,
        "description": "When the gateway received the request (UTC)",
    },
    "provider": {"data_type": "text", "description": "Upstream provider, e.g. openai"},
    "model": {"data_type": "text", "description": "Model requested"},
    "model_type": {"data_type": "text", "description": "Model type, e.g. chat or embeddings"},
    "success": {"data_type": "bool", "description": "Whether the upstream call succeeded"},
    "status_code": {"data_type": "bigint", "description": "Upstream HTTP status"},
    "cached": {"data_type": "bool", "description": "Served from the gateway cache"},
    "duration": {"data_type": "bigint", "description": "Request duration in milliseconds"},
    "tokens_in": {"data_type": "bigint", "description": "Prompt tokens (null when unknown)"},
    "tokens_out": {"data_type": "bigint", "description": "Completion tokens (null when unknown)"},
    "cost": {"data_type": "double", "description": "Estimated cost in USD"},
    "custom_cost": {"data_type": "bool", "description": "Cost set by cf-aig-custom-cost"},
    "request_type": {"data_type": "text", "description": "How the request reached the gateway"},
    "request_content_type": {"data_type": "text", "description": "Content type of the request"},
    "response_content_type": {"data_type": "text", "description": "Content type of the response"},
    "path": {"data_type": "text", "description": "Provider path"},
    "step": {"data_type": "bigint", "description": "Attempt index in a fallback chain"},
    "metadata": {"data_type": "json", "description": "cf-aig-metadata object, as sent"},
    # the list endpoint never returns feedback: reconcile writes it, and every merge keeps it
    "feedback": {
        "data_type": "bigint",
        "description": "Human feedback: 1 thumbs up, -1 thumbs down, null none (by reconcile)",
        "x-kept-on-merge": True,  # type: ignore[typeddict-unknown-key]
    },
    "ingested_at": {
        "data_type": "timestamp",
        "timezone": True,
        "description": "When this pipeline read the row (UTC)",
    },
}

TABLE_DESCRIPTION = "Cloudflare AI Gateway request logs, one row per log id (merged on id)"
BIGQUERY_CLUSTER_COLUMNS = ("provider", "model", "success", "id")
"""The old Worker's clustering; BigQuery allows at most 4 cluster columns, none of them JSON."""

INTEGER_FIELDS = tuple(name for name, c in LOG_COLUMNS.items() if c["data_type"] == "bigint")
FLOAT_FIELDS = tuple(name for name, c in LOG_COLUMNS.items() if c["data_type"] == "double")
BOOL_FIELDS = tuple(name for name, c in LOG_COLUMNS.items() if c["data_type"] == "bool")
TEXT_FIELDS = tuple(name for name, c in LOG_COLUMNS.items() if c["data_type"] == "text")
ORIGIN_COLUMNS = ("gateway_id", "account_id")
"""Columns every row gets from where it was read, not from the log itself."""

ENV_PREFIX = "SOURCES__AIG_SOURCE__"
"""Environment names users script against (a contract; see README)."""

KEPT_ON_MERGE_HINT = "x-kept-on-merge"
"""Column hint: a merge keeps the target row's value (the rows loaded never carry it; its own
job writes it in place). Set on `feedback`."""
BOUNDED_MERGE_HINT = "x-bounded-merge-column"
"""Table hint naming the column whose range in each batch bounds the merge's reads of the target
(see `destinations/merge.py`); set on `aig_logs` to `created_at`, safe because the API never
changes a log's `created_at`. Merge tables without it get dlt's own merge."""

DEDUPLICATED_HINT = "x-stage-data-deduplicated"
"""dlt's table hint for staged data with no duplicate primary key; the bounded merge sets it on
a batch it found unique, so dlt's INSERT skips its deduplicating window."""

DEFAULT_REPORT_PATH = "aig_logs_report.html"
DEFAULT_REPORT_DAYS = 30
TOP_MODELS = 8
"""Models the report's cost chart draws on their own; the rest are summed as `other`."""
TOP_METADATA_TAGS = 20
"""Metadata key=value pairs the report lists, by cost."""

DEFAULT_RECONCILE_WINDOW = "24h"
DEFAULT_RECONCILE_MAX_REQUESTS = 1000
"""Requests of one reconcile run, per gateway: a day of hourly buckets that agree takes 24, a
month of daily ones 30; a missing log about log2(logs in its bucket / per_page) more."""
RECONCILE_SETTLE_SECONDS = 60
"""The window ends this long before the run starts: the newest logs are the forward job's."""
RECONCILE_CHUNK_BUCKETS = 48
"""Buckets reconciled per load: bounds what a kill can lose and what a run holds in memory."""
RECONCILE_HOURLY_UP_TO_SECONDS = 2 * 86400
"""Windows up to two days are checked in hourly buckets, longer ones in daily buckets."""

WORKER_IMPORT_RESOURCE = "aig_logs_worker_import"
DEFAULT_WORKER_TABLE = "aig_logs_raw"
"""The old Worker's table of streamed rows (its view `aig_logs` deduplicates it)."""
WORKER_RENAMED_OBJECT = "aig_logs_worker"
"""The name suggested for a Worker view or table found where this pipeline's table belongs."""
IMPORTED_FROM_COLUMN = "imported_from"
IMPORTED_FROM_PREFIX = "worker:"
IMPORT_COLUMNS: Dict[str, TColumnSchema] = {
    IMPORTED_FROM_COLUMN: {
        "data_type": "text",
        "description": (
            "Set on rows imported from the old Worker's table (worker:<its table>); null once"
            " the row is read from the API, and on every row read from it"
        ),
    },
}
"""The column the Worker import adds; a forward or backfill run merging over an imported row
replaces it with the API's row, whose `imported_from` is null."""
IMPORT_CHUNK_ROWS = 500_000
"""Rows of the Worker's table read per load (whole UTC days; a larger day is a chunk of its own):
bounds what a kill can lose; each chunk's query bills BigQuery's 10 MB minimum at least."""
IMPORT_BATCH_ROWS = 10_000
"""Rows fetched from the warehouse at once while a chunk streams into the load."""
PRICE_PER_TIB_SCANNED = 6.25
"""BigQuery on-demand query price in USD per TiB (first TiB of a month free)."""
BIGQUERY_MIN_BYTES_PER_TABLE = 10 * 1024**2
"""BigQuery bills every query at least 10 MiB for each table it references."""
