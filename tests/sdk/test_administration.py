"""Knowledge bases, keys, the audit log and health through the SDK against a real `ragline serve`."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from ragline_client import AuthenticationError, ConflictError, NotFoundError, PermissionDeniedError
from ragline_client.models import ApiKeyCreated, KnowledgeBase

from tests.sdk.conftest import Both
from tests.support import Server


def test_knowledge_bases(both: Both, s1: Any, s2: Any) -> None:
    name = f"Manuals {uuid.uuid4().hex[:8]}"
    kb = both(s1.knowledge_bases.create(name, description="support manuals", chunk_size=128, chunk_overlap=16))
    assert isinstance(kb, KnowledgeBase) and (kb.name, kb.chunk_size, kb.status) == (name, 128, "active")
    with pytest.raises(ConflictError) as taken:
        both(s1.knowledge_bases.create(name.upper()))
    assert taken.value.status_code == 409

    listed = both.all(s1.knowledge_bases.list(page_size=1))  # one per page: paging through them all
    assert listed[0].id == "default" and kb.id in [k.id for k in listed]
    assert both(s1.knowledge_bases.get(kb.id)) == kb

    renamed = both(s1.knowledge_bases.update(kb.id, name=f"{name} v2", chunk_size=None))
    assert renamed.name == f"{name} v2" and renamed.chunk_size is None and renamed.chunk_overlap == 16
    untouched = both(s1.knowledge_bases.update(kb.id, description="only this"))
    assert (untouched.name, untouched.description) == (f"{name} v2", "only this")

    with pytest.raises(NotFoundError):
        both(s2.knowledge_bases.get(kb.id))
    with pytest.raises(NotFoundError):
        both(s2.knowledge_bases.delete(kb.id))
    with pytest.raises(ConflictError):
        both(s1.knowledge_bases.delete("default"))

    deleting = both(s1.knowledge_bases.delete(kb.id))
    assert deleting.id == kb.id and deleting.status == "deleting"
    deadline = time.monotonic() + 30
    while True:  # the purge finishes after the answer; then the KB is gone
        try:
            both(s1.knowledge_bases.get(kb.id))
        except NotFoundError:
            break
        assert time.monotonic() < deadline, "the knowledge base was never removed"
        time.sleep(0.1)


def test_keys_and_audit(both: Both, s1: Any, s2: Any, sdk_server: Server) -> None:
    created = both(s1.keys.create(f"ci {uuid.uuid4().hex[:6]}", ["search"], expires_in_days=7))
    assert isinstance(created, ApiKeyCreated) and created.key.startswith("rl_") and created.scopes == ["search"]
    assert created.key.startswith(created.prefix) and created.expires_at is not None

    assert created.id in [k.id for k in both.all(s1.keys.list(page_size=1))]
    shown = both(s1.keys.get(created.id))
    assert shown.id == created.id and not hasattr(shown, "key")
    with pytest.raises(NotFoundError):
        both(s2.keys.get(created.id))

    new_client = both.client(created.key, sdk_server.url)
    assert both(new_client.search("anything")).total_found >= 0
    with pytest.raises(PermissionDeniedError) as denied:
        both(new_client.documents.list_page())  # the key has the search scope only
    assert denied.value.status_code == 403

    usage = both(s1.keys.usage(created.id, period_days=1))
    assert usage.key_id == created.id and usage.requests == 2 and usage.errors == 1
    assert usage.by_route == {"POST /v1/kb/search": 1, "GET /v1/kb/documents": 1}

    rotated = both(s1.keys.rotate(created.id, grace_period_hours=0))
    assert rotated.id != created.id and rotated.rotated_from == created.id and rotated.key != created.key
    with pytest.raises(AuthenticationError):  # no grace period: the old secret is refused at once
        both(new_client.search("anything"))
    rotated_client = both.client(rotated.key, sdk_server.url)
    both(rotated_client.search("anything"))

    both(s1.keys.revoke(rotated.id))
    assert both(s1.keys.get(rotated.id)).revoked_at is not None
    with pytest.raises(AuthenticationError) as revoked:
        both(rotated_client.search("anything"))
    assert revoked.value.status_code == 401 and "revoked" in revoked.value.message

    actions = [(e.action, e.target) for e in both.all(s1.audit.list(page_size=2))[:50]]
    assert ("revoke_key", rotated.id) in actions and ("create_key", created.id) in actions


def test_health(both: Both, s1: Any, sdk_server: Server) -> None:
    assert both(s1.health.check()).status == "healthy"
    detailed = both(s1.health.detailed())
    assert detailed.status == "healthy" and detailed.dependencies["metadata_store"] == "healthy"
    assert "memory_usage" in detailed.system
    not_admin = both.client(sdk_server.keys["s1_search"], sdk_server.url)
    with pytest.raises(PermissionDeniedError):
        both(not_admin.health.detailed())
    # /health takes no key (the client sends none), so a client with a bad key still reaches it.
    assert both(both.client("rl_not-a-key", sdk_server.url).health.check()).status == "healthy"
