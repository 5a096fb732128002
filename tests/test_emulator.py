"""The emulator's fidelity to the Legacy Logs API, checked with raw HTTP and Cloudflare's SDK."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import cloudflare
import pytest
import requests

from aig_source.client import LogsApiClient
from aig_source.emulator import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_GATEWAY_ID,
    DEFAULT_TOKEN,
    LogsApiEmulator,
    RateLimit,
    make_log_id,
    make_ulid,
)

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def logs_url(
    api: LogsApiEmulator, account: str = DEFAULT_ACCOUNT_ID, gateway: str = DEFAULT_GATEWAY_ID
) -> str:
    return f"{api.base_url}/accounts/{account}/ai-gateway/gateways/{gateway}/logs"


def get(
    api: LogsApiEmulator,
    params: Optional[Dict[str, Any]] = None,
    token: Optional[str] = DEFAULT_TOKEN,
    url: Optional[str] = None,
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.get(url or logs_url(api), params=params or {}, headers=headers, timeout=10)


def error_code(response: requests.Response) -> int:
    body = response.json()
    assert body["success"] is False
    return int(body["errors"][0]["code"])


@pytest.fixture
def sdk(api: LogsApiEmulator) -> cloudflare.Cloudflare:
    return cloudflare.Cloudflare(api_token=DEFAULT_TOKEN, base_url=api.base_url, max_retries=0)


def test_sdk_parses_every_page_it_serves(api: LogsApiEmulator, sdk: cloudflare.Cloudflare) -> None:
    logs = api.generate(230, hours=2)
    expected = {log.id: log for log in logs}

    page = sdk.ai_gateway.logs.list(
        DEFAULT_GATEWAY_ID,
        account_id=DEFAULT_ACCOUNT_ID,
        per_page=50,
        order_by="created_at",
        order_by_direction="asc",
        extra_query={
            "filters": json.dumps([{"key": "success", "operator": "eq", "value": [True]}])
        },
    )
    items = list(page)  # auto-pagination: page+1 until an empty page

    succeeded = [log for log in logs if log.fields["success"]]
    assert [item.id for item in items] == [log.id for log in succeeded]
    for item in items:
        source = expected[item.id]
        assert item.provider == source.fields["provider"]
        assert item.model == source.fields["model"]
        assert item.tokens_in == source.fields["tokens_in"]
        assert item.cost == pytest.approx(source.fields["cost"])
        assert int(item.created_at.timestamp() * 1000) == source.created_at_ms
        assert item.metadata == source.fields.get("metadata")
    # the last page asked for was past the end, answered 200 with an empty result
    assert api.logs_requests()[-1].status == 200


def test_sdk_detail_edit_and_delete(api: LogsApiEmulator, sdk: cloudflare.Cloudflare) -> None:
    logs = api.generate(30, hours=1)
    target = logs[3]

    detail = sdk.ai_gateway.logs.get(
        target.id, account_id=DEFAULT_ACCOUNT_ID, gateway_id=DEFAULT_GATEWAY_ID
    )
    assert detail.id == target.id and detail.request_size is not None
    sdk.ai_gateway.logs.edit(
        target.id,
        account_id=DEFAULT_ACCOUNT_ID,
        gateway_id=DEFAULT_GATEWAY_ID,
        feedback=1,
        metadata={"reviewed": True},
    )
    assert json.loads(target.fields["metadata"]) == {"reviewed": True} and target.feedback == 1
    body = sdk.ai_gateway.logs.request(
        target.id, account_id=DEFAULT_ACCOUNT_ID, gateway_id=DEFAULT_GATEWAY_ID
    )
    assert body == target.request_body

    deleted = sdk.ai_gateway.logs.delete(
        DEFAULT_GATEWAY_ID, account_id=DEFAULT_ACCOUNT_ID, limit=5, order_by_direction="asc"
    )
    assert deleted.success is True
    assert len(api.gateway().store) == 25
    with pytest.raises(cloudflare.NotFoundError):
        sdk.ai_gateway.logs.get(
            logs[0].id, account_id=DEFAULT_ACCOUNT_ID, gateway_id=DEFAULT_GATEWAY_ID
        )


def test_defaults_shapes_and_formats(api: LogsApiEmulator) -> None:
    api.generate(45, hours=1)

    response = get(api)

    body = response.json()
    assert response.status_code == 200 and body["success"] is True
    info = body["result_info"]
    assert info == {"page": 1, "per_page": 20, "count": 20, "total_count": 45}
    assert "total_pages" not in info
    stamps = [item["created_at"] for item in body["result"]]
    assert stamps == sorted(stamps, reverse=True), "default order is created_at desc"
    for item in body["result"]:
        assert UUID7.match(item["id"]) and CREATED_AT.match(item["created_at"])
        assert "metadata" not in item or isinstance(item["metadata"], str)
        for required in ("provider", "model", "path", "duration", "success", "cached"):
            assert required in item
        assert "tokens_in" in item and "tokens_out" in item


def test_page_past_the_end_is_empty(api: LogsApiEmulator) -> None:
    api.generate(10, hours=1)

    body = get(api, {"page": 3, "per_page": 10}).json()

    assert body["result"] == [] and body["result_info"]["count"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"per_page": 51},
        {"per_page": 0},
        {"page": 0},
        {"page": "x"},
        {"order_by": "cost"},
        {"order_by_direction": "up"},
        {"filters": "not json"},
        {"filters": json.dumps([{"key": "metadata.run_id", "operator": "eq", "value": ["a"]}])},
        {"filters": json.dumps([{"key": "model", "operator": "gte", "value": ["a"]}])},
        {"filters": json.dumps([{"key": "model", "operator": "eq", "value": "a"}])},
    ],
)
def test_validation_errors_use_code_7001(api: LogsApiEmulator, params: Dict[str, Any]) -> None:
    response = get(api, params)
    assert response.status_code == 400 and error_code(response) == 7001


def test_auth_and_routing_errors(api: LogsApiEmulator) -> None:
    no_auth = get(api, token=None)
    assert no_auth.status_code == 400 and error_code(no_auth) == 9106
    wrong = get(api, token="nope")
    assert wrong.status_code == 403 and error_code(wrong) == 10000
    account = get(api, url=logs_url(api, account="f" * 32))
    assert account.status_code == 404 and error_code(account) == 7003
    gateway = get(api, url=logs_url(api, gateway="missing"))
    assert gateway.status_code == 404 and error_code(gateway) == 7002
    api.add_token("read-only", ["read"])
    delete = requests.delete(
        logs_url(api), headers={"Authorization": "Bearer read-only"}, timeout=10
    )
    assert delete.status_code == 403 and error_code(delete) == 10000


def test_json_filters_apply_and_flattened_filters_are_ignored(api: LogsApiEmulator) -> None:
    logs = api.generate(120, hours=1)
    openai = [log for log in logs if log.fields["provider"] == "openai"]

    filtered = get(
        api,
        {
            "per_page": 50,
            "filters": json.dumps([{"key": "provider", "operator": "eq", "value": ["openai"]}]),
        },
    ).json()
    flattened = get(
        api,
        {
            "per_page": 50,
            "filters.key": "provider",
            "filters.operator": "eq",
            "filters.value": "openai",
        },
    ).json()
    repeated = get(
        api,
        [
            ("per_page", 50),
            ("filters", json.dumps({"key": "provider", "operator": "eq", "value": ["openai"]})),
        ],
    ).json()  # type: ignore[arg-type]

    assert filtered["result_info"]["total_count"] == len(openai)
    assert flattened["result_info"]["total_count"] == 120, "the real API silently ignores this form"
    assert repeated["result_info"]["total_count"] == len(openai)


def test_created_at_and_metadata_filters(api: LogsApiEmulator) -> None:
    logs = api.generate(100, hours=1)
    middle = logs[50]
    newer = [log for log in logs if log.created_at_ms > middle.created_at_ms]
    tagged = api.make_log(api.now_ms() - 1000)
    tagged.fields["metadata"] = json.dumps({"run_id": "abc"})
    api.add_logs([tagged])

    body = get(
        api,
        {
            "filters": json.dumps(
                [
                    {
                        "key": "created_at",
                        "operator": "gt",
                        "value": [json.loads(json.dumps(middle.list_item()))["created_at"]],
                    }
                ]
            ),
            "per_page": 1,
        },
    ).json()
    by_metadata = get(
        api,
        {
            "filters": json.dumps(
                [
                    {"key": "metadata.key", "operator": "eq", "value": ["run_id"]},
                    {"key": "metadata.value", "operator": "eq", "value": ["abc"]},
                ]
            )
        },
    ).json()

    assert body["result_info"]["total_count"] == len(newer) + 1
    assert [item["id"] for item in by_metadata["result"]] == [tagged.id]


def test_rows_become_visible_after_their_write_delay(api: LogsApiEmulator) -> None:
    now = api.now_ms()
    late = api.make_log(now - 10_000, visible_at_ms=now + 30_000)
    api.add_logs([late])
    assert get(api).json()["result_info"]["total_count"] == 0
    api.advance(31)
    assert [item["id"] for item in get(api).json()["result"]] == [late.id]


def test_capacity_evicts_the_oldest(api: LogsApiEmulator) -> None:
    gateway = api.add_gateway("capped", capacity=50, strategy="DELETE_OLDEST")
    logs = api.generate(80, hours=1, gateway_id="capped")

    kept = {log.id for log in gateway.store.snapshot()}

    assert kept == {log.id for log in sorted(logs, key=lambda log: log.sort_key())[-50:]}
    assert gateway.store.evicted == 30
    settings = requests.get(
        f"{api.base_url}/accounts/{DEFAULT_ACCOUNT_ID}/ai-gateway/gateways/capped",
        headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
        timeout=10,
    ).json()["result"]
    assert (
        settings["log_management"] == 50 and settings["log_management_strategy"] == "DELETE_OLDEST"
    )


def test_rate_limit_blocks_with_429_and_retry_after(api: LogsApiEmulator) -> None:
    api.rate_limit = RateLimit(requests=3, window_seconds=60, block_seconds=300)

    statuses = [get(api).status_code for _ in range(3)]
    blocked = get(api)

    assert statuses == [200, 200, 200]
    assert blocked.status_code == 429 and error_code(blocked) == 971
    assert int(blocked.headers["retry-after"]) == 300
    assert "Ratelimit" in blocked.headers and "Ratelimit-Policy" in blocked.headers


def test_faults_and_request_record(api: LogsApiEmulator) -> None:
    api.faults.server_errors = 2
    api.faults.server_error_status = 502
    api.faults.malformed = 1

    first, second, third = get(api), get(api), get(api)

    assert (first.status_code, second.status_code) == (502, 502) and error_code(first) == 7000
    assert third.status_code == 200
    with pytest.raises(ValueError):
        third.json()
    assert [r.status for r in api.requests] == [502, 502, 200]
    assert all("emulator-token" not in str(r) for r in api.requests)


def test_ids_are_ulids_before_2026_10_08_and_uuid7_after() -> None:
    import random

    rng = random.Random(1)
    before, after = 1_791_417_599_999, 1_791_417_600_000
    ulid, uuid7 = make_log_id(before, rng), make_log_id(after, rng)

    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = 0
    for char in ulid[:10]:
        value = value * 32 + crockford.index(char)
    assert value == before and ULID.match(ulid)
    assert UUID7.match(uuid7) and int(uuid7.replace("-", "")[:12], 16) == after
    assert make_ulid(after, rng) != uuid7


def test_command_line_serves_until_interrupted(tmp_path: Any) -> None:
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "aig_source.emulator", "--logs", "20", "--live", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        base_url = re.search(r"(http://127\.0\.0\.1:\d+/client/v4)", line)
        assert base_url, line
        response = requests.get(
            f"{base_url.group(1)}/accounts/{DEFAULT_ACCOUNT_ID}/ai-gateway/gateways/{DEFAULT_GATEWAY_ID}/logs",
            headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
            timeout=10,
        )
        assert response.json()["result_info"]["total_count"] == 20
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        time.sleep(0)
    assert process.returncode == 0


def gateways_url(api: LogsApiEmulator) -> str:
    return f"{api.base_url}/accounts/{DEFAULT_ACCOUNT_ID}/ai-gateway/gateways"


def test_gateway_list_pages_as_the_api_does(
    api: LogsApiEmulator, sdk: cloudflare.Cloudflare
) -> None:
    for index in range(44):
        api.add_gateway(f"app-{index:02d}")

    first = get(api, url=gateways_url(api)).json()
    past_the_end = get(api, {"page": 9}, url=gateways_url(api)).json()
    searched = get(api, {"search": "app-1", "per_page": 100}, url=gateways_url(api)).json()
    listed = [gateway.id for gateway in sdk.ai_gateway.list(account_id=DEFAULT_ACCOUNT_ID)]

    assert len(first["result"]) == 20 and first["result_info"]["total_count"] == 45
    assert first["result_info"] == {"page": 1, "per_page": 20, "count": 20, "total_count": 45}
    assert past_the_end["success"] and past_the_end["result"] == []
    assert {g["id"] for g in searched["result"]} == {f"app-1{d}" for d in range(10)}
    assert sorted(listed) == sorted([DEFAULT_GATEWAY_ID, *(f"app-{i:02d}" for i in range(44))])
    assert error_code(get(api, {"per_page": 101}, url=gateways_url(api))) == 7001
    assert error_code(get(api, {"order": "x"}, url=gateways_url(api))) == 7001


def test_a_removed_gateway_leaves_the_list_and_its_routes_answer_404(api: LogsApiEmulator) -> None:
    api.add_gateway("short-lived")
    api.remove_gateway("short-lived")

    listed = get(api, url=gateways_url(api)).json()["result"]
    logs = get(api, url=logs_url(api, gateway="short-lived"))

    assert [g["id"] for g in listed] == [DEFAULT_GATEWAY_ID]
    assert logs.status_code == 404 and error_code(logs) == 7002


EMULATOR_ARGS = ("--gateways", "3", "--logs", "7", "--live", "0")


def test_the_command_line_emulator_serves_several_gateways(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "aig_source.emulator", *EMULATOR_ARGS],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(5)]
        base_url = lines[0].split(" on ")[1].split(" ")[0]
        assert "SOURCES__AIG_SOURCE__GATEWAY_ID='*'" in "".join(lines)
        client = LogsApiClient(base_url, DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, DEFAULT_TOKEN)
        listed = sorted(gateway["id"] for gateway in client.list_gateways())
        assert listed == [DEFAULT_GATEWAY_ID, "gateway-2", "gateway-3"]
        assert client.for_gateway("gateway-3").list_logs([], per_page=1).total_count == 7
    finally:
        process.terminate()
        process.wait(timeout=10)
