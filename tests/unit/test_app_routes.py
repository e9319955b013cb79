"""Which paths each API Lambda function serves: the router sets of functions/*/app.py, pinned."""

from __future__ import annotations

import pytest

from ragline.api.app import create_app
from ragline.config import Settings
from ragline.container import Container

HEALTH = {("GET", "/health"), ("GET", "/health/detailed")}
DOCUMENTS = {
    ("POST", "/v1/kb/uploads"),
    ("PUT", "/v1/kb/uploads/{document_id}"),
    ("POST", "/v1/kb/documents"),
    ("GET", "/v1/kb/documents"),
    ("GET", "/v1/kb/documents/{document_id}"),
    ("DELETE", "/v1/kb/documents/{document_id}"),
    ("POST", "/v1/kb/delete"),
    ("GET", "/v1/kb/jobs/{job_id}"),
}
KNOWLEDGE_BASES = {
    ("POST", "/v1/knowledge-bases"),
    ("GET", "/v1/knowledge-bases"),
    ("GET", "/v1/knowledge-bases/{kb_id}"),
    ("PATCH", "/v1/knowledge-bases/{kb_id}"),
    ("DELETE", "/v1/knowledge-bases/{kb_id}"),
    ("GET", "/v1/knowledge-bases/{kb_id}/documents"),
}
WEBHOOKS = {
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{webhook_id}"),
    ("PATCH", "/v1/webhooks/{webhook_id}"),
    ("DELETE", "/v1/webhooks/{webhook_id}"),
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"),
    ("POST", "/v1/webhooks/{webhook_id}/test"),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"),
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"),
}

KEYS = {
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("GET", "/v1/keys/{key_id}"),
    ("DELETE", "/v1/keys/{key_id}"),
    ("POST", "/v1/keys/{key_id}/rotate"),
    ("GET", "/v1/keys/{key_id}/usage"),
    ("GET", "/v1/audit"),
}

INSIGHT = {
    ("GET", "/v1/queries/history"),
    ("GET", "/v1/queries/{query_id}"),
    ("DELETE", "/v1/queries/{query_id}"),
    ("PATCH", "/v1/queries/{query_id}/rating"),
    ("GET", "/v1/analytics/popular"),
    ("GET", "/v1/analytics/usage"),
    ("GET", "/v1/documents/{document_id}/stats"),
    ("GET", "/v1/kb/documents/{document_id}/stats"),
}

SERVED = [
    (("documents", "knowledge_bases", "health"), DOCUMENTS | KNOWLEDGE_BASES | HEALTH),  # functions/documents
    (("search",), {("POST", "/v1/kb/search")}),  # functions/search
    (("chat",), {("POST", "/v1/kb/chat")}),  # functions/chat
    (("stream", "health"), {("POST", "/v1/kb/chat/stream")} | HEALTH),  # functions/stream_chat
    (("webhooks",), WEBHOOKS),  # functions/webhooks
    (("keys",), KEYS),  # functions/keys
    (("insight",), INSIGHT),  # functions/insight
    (
        None,  # ragline serve: everything
        DOCUMENTS
        | KNOWLEDGE_BASES
        | HEALTH
        | KEYS
        | WEBHOOKS
        | INSIGHT
        | {("POST", "/v1/kb/search"), ("POST", "/v1/kb/chat"), ("POST", "/v1/kb/chat/stream")},
    ),
]


@pytest.mark.parametrize(("routers", "expected"), SERVED)
def test_each_function_serves_its_paths(tmp_path, routers, expected):
    app = create_app(Container(Settings(data_dir=tmp_path)), routers=routers)
    served = {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}
    assert served == expected


def test_an_unknown_router_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown routers"):
        create_app(Container(Settings(data_dir=tmp_path)), routers=("uploads",))
