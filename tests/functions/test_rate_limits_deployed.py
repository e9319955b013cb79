"""Rate limits when deployed: the functions in authorizer mode, under moto, count each key in the
stack's DynamoDB table, so the limit holds across functions and containers (each keeps nothing)."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest

from ragline.adapters.aws.dynamodb.rate_limits import counter_key
from ragline.adapters.aws.dynamodb.table import serialize
from ragline.rate_limits import window_at
from ragline_emulator.event_sources import EmulatedLambdaContext
from tests.functions.conftest import REGION, authorizer_context, response_json, rest_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def _headers(response: dict[str, Any]) -> dict[str, str]:
    return {name.lower(): value for name, value in (response.get("headers") or {}).items()}


def _away_from_a_boundary(key_id: str, needed: float = 8.0) -> None:
    """Start where the key's window has ``needed`` seconds left (the functions read the real clock)."""
    now = time.time()
    left = window_at(now, key_id).end - now
    if left < needed:
        time.sleep(left + 0.05)


def test_the_limit_from_the_authorizer_holds_across_functions(make_stack: Any, context: EmulatedLambdaContext) -> None:
    stack = make_stack(RAGLINE_AUTH_MODE="authorizer", RAGLINE_RATE_LIMIT_PER_MINUTE="50")
    key_id = stack.key_ids["t1"]
    principal = {**authorizer_context("t1", "chat,ingest,search", key_id), "rate_limit_per_minute": "3"}
    documents, search = stack.handler("documents"), stack.handler("search")
    _away_from_a_boundary(key_id)

    served = [documents(rest_event("GET", "/v1/kb/documents", authorizer=principal), context) for _ in range(3)]
    assert [r["statusCode"] for r in served] == [200, 200, 200]
    assert [_headers(r)["ratelimit-remaining"] for r in served] == ["2", "1", "0"]
    assert {_headers(r)["ratelimit-limit"] for r in served} == {"3"}

    # Another function (its own Lambda container) sees the same count: it lives in the table.
    refused = search(rest_event("POST", "/v1/kb/search", body={"query": "refunds"}, authorizer=principal), context)
    assert refused["statusCode"] == 429, refused
    body = response_json(refused)
    assert body["code"] == 429 and body["retry_after"] == int(_headers(refused)["retry-after"]) >= 1
    assert _headers(refused)["ratelimit-remaining"] == "0"

    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=stack.container.settings.table_name,
        Key=serialize(counter_key(key_id, window_at(time.time(), key_id))),
        ConsistentRead=True,
    )["Item"]
    assert item["n"] == {"N": "3"} and "delete_after" in item

    # Another key is untouched; without a limit of its own it follows the setting.
    t2 = authorizer_context("t2", "ingest", stack.key_ids["t2"])
    other = documents(rest_event("GET", "/v1/kb/documents", authorizer=t2), context)
    assert other["statusCode"] == 200 and _headers(other)["ratelimit-limit"] == "50"
