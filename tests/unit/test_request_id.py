"""Every answer names its request: API Gateway's id when deployed, a new one otherwise; never the caller's."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ragline.api.app import create_app
from ragline.api.request_id import request_id_of
from ragline.config import Settings
from ragline.container import Container


@pytest.fixture(scope="module")
def api_client(tmp_path_factory):
    app = create_app(Container(Settings(data_dir=tmp_path_factory.mktemp("request-id"))))
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"aws.event": {"requestContext": {"requestId": "c6af9ac6-7b61"}}}, "c6af9ac6-7b61"),
        ({"aws.event": {"requestContext": {"requestId": ""}}}, None),
        ({"aws.event": {"requestContext": None}}, None),
        ({"aws.event": "not an event"}, None),
        ({}, None),
    ],
)
def test_request_id_of(scope, expected):
    found = request_id_of(scope)
    if expected is None:
        assert found.startswith("req_") and len(found) == 36
    else:
        assert found == expected


def test_every_answer_has_its_own_id_and_a_callers_is_not_reused(api_client):
    first = api_client.get("/health", headers={"x-request-id": "forged"})
    second = api_client.get("/v1/kb/documents")  # 401: refused answers are named too
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert second.status_code == 401 and len(ids) == 2 and "forged" not in ids
