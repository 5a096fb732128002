"""What the analysis views must hold, computed in Python from the emulator's logs (not from the
warehouse), and a fleet history that exercises them: two gateways, both sides of Cloudflare's
model renaming, and metadata with several keys, nested values, nulls, `{}` and none at all."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import pytest

from aig_source.emulator import DEFAULT_GATEWAY_ID, LogsApiEmulator
from aig_source.emulator.store import StoredLog
from aig_source.emulator.traffic import PROVIDER_PREFIXED_MODELS_SINCE_MS

SECOND_GATEWAY = "app-b"
GATEWAYS = (DEFAULT_GATEWAY_ID, SECOND_GATEWAY)
METADATA_CASES: List[Optional[Dict[str, Any]]] = [
    {"user": "alice", "team": "search", "n": 3, "beta": True},
    {"user": "bob", "nested": {"x": 1, "y": [1, 2]}, "list": ["a", "b"]},
    {"user": None, "env": "prod"},
    {},
    None,
    {"team": "search", "env": "prod"},
    {"team": 'o\'neil "quoted"', "émoji": "✓"},
]
"""Metadata set on successive logs, round robin; None removes it from the log."""

Logged = Tuple[str, StoredLog]
Fetch = Callable[[str], List[Tuple[Any, ...]]]
"""Runs a query with `{dataset}` standing for the qualified dataset; returns its rows."""


def load_history(api: LogsApiEmulator, per_gateway: int = 150) -> Tuple[int, List[Logged]]:
    """Logs of two gateways from two days before the model renaming up to a minute ago; returns
    the earliest `created_at` and the logs with their gateway."""
    api.add_gateway(SECOND_GATEWAY)
    start = PROVIDER_PREFIXED_MODELS_SINCE_MS - 2 * 86_400_000
    end = api.now_ms() - 60_000
    logged: List[Logged] = []
    for gateway_id, count in (
        (DEFAULT_GATEWAY_ID, per_gateway),
        (SECOND_GATEWAY, per_gateway // 2),
    ):
        for log in api.generate(count, start_ms=start, end_ms=end, gateway_id=gateway_id):
            logged.append((gateway_id, log))
    for number, (_, log) in enumerate(logged):
        case = METADATA_CASES[number % len(METADATA_CASES)]
        if case is None:
            log.fields.pop("metadata", None)
        else:
            log.fields["metadata"] = json.dumps(case)
    # a day with many logs of one model, so its percentiles come from a real distribution
    busy = end - 3 * 86_400_000
    for log in api.generate(120, start_ms=busy, end_ms=busy + 3_600_000):
        logged.append((DEFAULT_GATEWAY_ID, log))
    return start, logged


def utc_day(created_at_ms: int) -> str:
    return datetime.fromtimestamp(created_at_ms / 1000, timezone.utc).date().isoformat()


def utc_hour(created_at_ms: int) -> str:
    moment = datetime.fromtimestamp(created_at_ms / 1000, timezone.utc)
    return moment.replace(minute=0, second=0, microsecond=0).isoformat()


def bare_model(provider: Optional[str], model: Optional[str]) -> Optional[str]:
    if provider and model and model.startswith(provider + "/"):
        return model[len(provider) + 1 :]
    return model


def _key(gateway_id: str, log: StoredLog) -> Tuple[Any, ...]:
    f = log.fields
    return (
        utc_day(log.created_at_ms),
        gateway_id,
        f.get("provider"),
        bare_model(f.get("provider"), f.get("model")),
    )


def expected_usage(logged: Iterable[Logged]) -> Dict[Tuple[Any, ...], Dict[str, Any]]:
    groups: Dict[Tuple[Any, ...], Dict[str, Any]] = defaultdict(
        lambda: dict.fromkeys(
            ("requests", "errors", "cached_requests", "tokens_in", "tokens_out", "cost"), 0
        )
    )
    for gateway_id, log in logged:
        f, group = log.fields, groups[_key(gateway_id, log)]
        group["requests"] += 1
        group["errors"] += f.get("success") is False
        group["cached_requests"] += f.get("cached") is True
        group["tokens_in"] += f.get("tokens_in") or 0
        group["tokens_out"] += f.get("tokens_out") or 0
        group["cost"] += f.get("cost") or 0
    return dict(groups)


def nearest_rank(values: Sequence[int], percentile: int) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percentile / 100 * len(ordered))) - 1]


def rank_neighbours(values: Sequence[int], percentile: int) -> Tuple[int, int]:
    """The values one rank either side of the nearest rank: an approximate quantile (BigQuery's
    APPROX_QUANTILES) must fall between them."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile / 100 * len(ordered))) - 1
    return ordered[max(0, rank - 1)], ordered[min(len(ordered) - 1, rank + 1)]


def durations_by_group(logged: Iterable[Logged]) -> Dict[Tuple[Any, ...], List[int]]:
    groups: Dict[Tuple[Any, ...], List[int]] = defaultdict(list)
    for gateway_id, log in logged:
        duration = log.fields.get("duration")
        groups[_key(gateway_id, log)]
        if duration is not None:
            groups[_key(gateway_id, log)].append(int(duration))
    return dict(groups)


def metadata_text(value: Any) -> Optional[str]:
    """A metadata value as the view's text: a string as is, a JSON null as NULL, anything else
    as JSON text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def comparable_metadata_value(text: Optional[str]) -> Any:
    """Nested values compared as parsed JSON: engines may space or order JSON text differently."""
    if text and text[:1] in "[{":
        return json.dumps(json.loads(text), sort_keys=True)
    return text


def expected_metadata(logged: Iterable[Logged]) -> Dict[Tuple[Any, ...], Dict[str, Any]]:
    groups: Dict[Tuple[Any, ...], Dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "cost": 0.0}
    )
    for gateway_id, log in logged:
        raw = log.fields.get("metadata")
        metadata = json.loads(raw) if raw else None
        if not isinstance(metadata, dict):
            continue
        for key, value in metadata.items():
            text = comparable_metadata_value(metadata_text(value))
            group = groups[(utc_day(log.created_at_ms), gateway_id, key, text)]
            group["requests"] += 1
            group["cost"] += log.fields.get("cost") or 0
    return dict(groups)


def expected_errors(logged: Iterable[Logged]) -> Dict[Tuple[Any, ...], int]:
    groups: Dict[Tuple[Any, ...], int] = defaultdict(int)
    for gateway_id, log in logged:
        if log.fields.get("success") is False:
            groups[(*_key(gateway_id, log), log.fields.get("status_code"))] += 1
    return dict(groups)


def expected_hourly(logged: Iterable[Logged]) -> Dict[Tuple[Any, ...], int]:
    groups: Dict[Tuple[Any, ...], int] = defaultdict(int)
    for gateway_id, log in logged:
        day, gateway, provider, model = _key(gateway_id, log)
        groups[(utc_hour(log.created_at_ms), day, gateway, provider, model)] += 1
    return dict(groups)


def expected_cache(logged: Iterable[Logged]) -> Dict[Tuple[Any, ...], Dict[str, float]]:
    groups: Dict[Tuple[Any, ...], Dict[str, float]] = defaultdict(
        lambda: {"requests": 0, "cached": 0, "uncached": 0, "uncached_cost": 0.0}
    )
    for gateway_id, log in logged:
        f, group = log.fields, groups[_key(gateway_id, log)]
        group["requests"] += 1
        if f.get("cached") is True:
            group["cached"] += 1
        elif f.get("success") is True:
            group["uncached"] += 1
            group["uncached_cost"] += f.get("cost") or 0
    return {
        key: {
            "requests": g["requests"],
            "cached_requests": g["cached"],
            "cache_hit_rate": g["cached"] / g["requests"],
            "estimated_savings": g["cached"]
            * (g["uncached_cost"] / g["uncached"] if g["uncached"] else 0),
        }
        for key, g in groups.items()
    }


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


def day_text(value: Any) -> str:
    return value.isoformat()


def check_views(fetch: Fetch, logged: List[Logged], exact_percentiles: bool) -> None:
    """Every view's rows equal the figures computed from `logged`."""
    usage = {
        (day_text(r[0]), *r[1:4]): dict(
            zip(
                ("requests", "errors", "cached_requests", "tokens_in", "tokens_out", "cost"),
                r[4:],
                strict=True,
            )
        )
        for r in fetch(
            "SELECT day, gateway_id, provider, model, requests, errors, cached_requests,"
            " tokens_in, tokens_out, cost FROM {dataset}.aig_usage_daily"
        )
    }
    expected = expected_usage(logged)
    assert usage.keys() == expected.keys()
    for key, figures in expected.items():
        assert usage[key] == {**figures, "cost": pytest.approx(figures["cost"], abs=1e-9)}, key
    # one model, one row: no provider/ prefix survives, though the logs hold both forms
    assert all(not str(model).startswith(f"{provider}/") for _, _, provider, model in usage)

    durations = durations_by_group(logged)
    latency = fetch(
        "SELECT day, gateway_id, provider, model, requests, p50_ms, p95_ms, p99_ms"
        " FROM {dataset}.aig_latency_daily"
    )
    assert {(day_text(r[0]), *r[1:4]) for r in latency} == durations.keys()
    for row in latency:
        values = durations[(day_text(row[0]), *row[1:4])]
        assert row[4] == len(values)
        for percentile, got in zip((50, 95, 99), row[5:], strict=True):
            if exact_percentiles:
                assert got == nearest_rank(values, percentile), (row, percentile)
            else:
                low, high = rank_neighbours(values, percentile)
                assert low <= got <= high, (row, percentile)

    metadata = {
        (day_text(r[0]), r[1], r[2], comparable_metadata_value(r[3])): {
            "requests": r[4],
            "cost": r[5],
        }
        for r in fetch(
            "SELECT day, gateway_id, metadata_key, metadata_value, requests, cost"
            " FROM {dataset}.aig_cost_by_metadata"
        )
    }
    expected_tags = expected_metadata(logged)
    assert metadata.keys() == expected_tags.keys()
    for key, figures in expected_tags.items():
        assert metadata[key]["requests"] == figures["requests"], key
        assert metadata[key]["cost"] == pytest.approx(figures["cost"], abs=1e-9), key

    errors = {
        (day_text(r[0]), *r[1:5]): r[5]
        for r in fetch(
            "SELECT day, gateway_id, provider, model, status_code, requests"
            " FROM {dataset}.aig_errors_daily"
        )
    }
    assert errors == expected_errors(logged) and errors

    cache = {
        (day_text(r[0]), *r[1:4]): r[4:]
        for r in fetch(
            "SELECT day, gateway_id, provider, model, requests, cached_requests, cache_hit_rate,"
            " estimated_savings FROM {dataset}.aig_cache_daily"
        )
    }
    expected_savings = expected_cache(logged)
    assert cache.keys() == expected_savings.keys()
    for key, figures in expected_savings.items():
        assert cache[key] == pytest.approx(tuple(figures.values()), abs=1e-9), key

    hourly = {
        (r[0].astimezone(timezone.utc).isoformat(), day_text(r[1]), *r[2:5]): r[5]
        for r in fetch(
            "SELECT hour, day, gateway_id, provider, model, requests"
            " FROM {dataset}.aig_traffic_hourly"
        )
    }
    assert hourly == expected_hourly(logged)
