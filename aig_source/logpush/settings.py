"""Constants of the Logpush files source (`aig_logpush`)."""

from typing import Dict, Tuple

from dlt.common.schema.typing import TColumnSchema

LOGPUSH_SECTION = "aig_logpush"
LOGPUSH_RESOURCE = "aig_logs_logpush"

DEFAULT_FILE_GLOB = "**/*.log.gz"
"""Every batch file under the bucket path, in Cloudflare's `YYYYMMDD` folders or not; test and
ownership-challenge files (`test.txt.gz`, `*.txt`) do not match."""
LOG_FILE_SUFFIX = ".log.gz"

DEFAULT_FILES_PER_LOAD = 200
"""Files read per load (each load commits its files with their rows): bounds what a kill can
lose and what a backlog's load holds on disk."""
DEFAULT_RECORDS_PER_LOAD = 100_000
"""A load ends after the file that brings it to this many records: the merge of a load's rows is
what takes memory (DuckDB held 1.6 GiB merging one load of a million records)."""
DEFAULT_LOOKBACK_SECONDS = 6 * 3600
"""Files modified up to this long before the newest file loaded are remembered by name; older
ones are settled (loaded, or kept in the failed list until they load). Covers uploads that
finish out of order (an S3 multipart upload is dated when it starts)."""
DECRYPT_THREADS = 0
"""Files read at once; 0 means one per CPU. Unwrapping a field's key is an RSA-4096 private
operation (about 6 ms of CPU here) that releases the GIL, so files decrypt in parallel."""

DOCUMENTED_FIELDS = (
    "Cached",
    "Endpoint",
    "Gateway",
    "Metadata",
    "Metrics",
    "Model",
    "Provider",
    "RateLimited",
    "RequestBody",
    "RequestedModel",
    "ResponseBody",
    "RoutingDecisionID",
    "RoutingReason",
    "StatusCode",
    "Timestamp",
)
"""The dataset's fields as Cloudflare's page lists them: a job's `field_names` should hold all of
them (the job exports only the fields it names)."""
ENCRYPTED_FIELDS = ("Metadata", "RequestBody", "ResponseBody")
BODY_COLUMNS = {"RequestBody": "request_body", "ResponseBody": "response_body"}

ID_FIELDS = ("ID", "Id", "LogID", "LogId", "id")
"""Field names a log id could arrive under; Cloudflare documents none today."""
DIGEST_ID_PREFIX = "lp_"
"""Ids made from a record's digest (when the record has no id) start with this."""

FIELD_COLUMNS: Dict[str, str] = {
    "Cached": "cached",
    "Endpoint": "endpoint",
    "Gateway": "gateway_id",
    "Model": "model",
    "Provider": "provider",
    "RateLimited": "rate_limited",
    "RequestedModel": "requested_model",
    "RoutingDecisionID": "routing_decision_id",
    "RoutingReason": "routing_reason",
    "StatusCode": "status_code",
    "TokensIn": "tokens_in",
    "TokensOut": "tokens_out",
}
"""Documented Logpush fields and the `aig_logs` column each fills (same name where the Logs API
has the same meaning). `Timestamp`, `Metrics`, `Metadata` and the bodies are mapped by hand;
any other field becomes a column of its own, in snake case."""
METRICS_COLUMNS: Dict[str, str] = {
    "cost": "cost",
    "durationMs": "duration",
    "tokensIn": "tokens_in",
    "tokensOut": "tokens_out",
    "tokens_in": "tokens_in",
    "tokens_out": "tokens_out",
}
"""Keys of `Metrics` with a column of their own; others become `metrics_<key>` columns."""
EMPTY_MEANS_NONE = ("routing_decision_id", "routing_reason")
"""Cloudflare writes an empty string when there was no routing decision."""

LOGPUSH_COLUMNS: Dict[str, TColumnSchema] = {
    "requested_model": {
        "data_type": "text",
        "description": "Model the caller asked for (Logpush RequestedModel), e.g. cloudflare/auto",
    },
    "endpoint": {"data_type": "text", "description": "Endpoint requested (Logpush Endpoint)"},
    "rate_limited": {"data_type": "bool", "description": "Rate limited by the gateway"},
    "routing_decision_id": {
        "data_type": "text",
        "description": "Smart-routing decision id (cf-aig-routing-decision-id); null without one",
    },
    "routing_reason": {
        "data_type": "text",
        "description": "Why smart routing chose the model (cf-aig-routing-reason)",
    },
    "logpush_file": {
        "data_type": "text",
        "description": "The Logpush file the row was read from (path under bucket_url)",
    },
}
"""Columns only Logpush rows fill (null on rows read from the Logs API)."""
BODY_SCHEMA: Dict[str, TColumnSchema] = {
    "request_body": {"data_type": "text", "description": "Decrypted request body (load_bodies)"},
    "response_body": {"data_type": "text", "description": "Decrypted response body (load_bodies)"},
}

TIMESTAMP_FORMATS: Tuple[str, ...] = ("unixnano", "unix", "rfc3339", "rfc3339ms", "rfc3339ns")
"""`output_options.timestamp_format` values a Logpush job may use; all are read."""
