"""The Logs API client on its own: the account's gateway list, paged to the end."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

from aig_source.client import ApiResponseError, LogsApiClient
from aig_source.emulator import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_GATEWAY_ID,
    DEFAULT_TOKEN,
    LogsApiEmulator,
)


def client(api: LogsApiEmulator) -> LogsApiClient:
    return LogsApiClient(api.base_url, DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, DEFAULT_TOKEN)


def add_customers(api: LogsApiEmulator, count: int) -> None:
    for index in range(count):
        api.add_gateway(f"customer-{index:03d}")


def listed_pages(api: LogsApiEmulator) -> List[Dict[str, List[str]]]:
    return [r.query for r in api.requests if r.path.endswith("/ai-gateway/gateways")]


def test_every_gateway_is_listed_across_pages(api: LogsApiEmulator) -> None:
    add_customers(api, 230)

    gateways = client(api).list_gateways()

    assert len(gateways) == len({g["id"] for g in gateways}) == 231
    assert {"customer-000", "customer-229", DEFAULT_GATEWAY_ID} <= {g["id"] for g in gateways}
    assert [query["page"] for query in listed_pages(api)] == [["1"], ["2"], ["3"]]


def test_a_gateway_deleted_while_the_list_is_paged_skips_no_other(
    api: LogsApiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_customers(api, 150)
    serve = api._list_gateways
    served: List[int] = []

    def delete_after_the_first_page(*args: Any) -> Dict[str, Any]:
        answer = serve(*args)
        served.append(1)
        if len(served) == 1:
            # the oldest gateway goes: every later one shifts back a place, across the boundary
            api.remove_gateway(DEFAULT_GATEWAY_ID)
        return answer

    monkeypatch.setattr(api, "_list_gateways", delete_after_the_first_page)

    gateways = {g["id"] for g in client(api).list_gateways()}

    assert gateways == {f"customer-{index:03d}" for index in range(150)}
    assert len(served) == 4, "the changed total made it read the list again"


def test_a_list_that_never_settles_fails_clearly(
    api: LogsApiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_customers(api, 120)
    serve = api._list_gateways

    def growing(*args: Any) -> Dict[str, Any]:
        api.add_gateway(f"new-{len(api.requests)}")
        return serve(*args)

    monkeypatch.setattr(api, "_list_gateways", growing)

    with pytest.raises(ApiResponseError, match="kept changing while it was read"):
        client(api).list_gateways()
