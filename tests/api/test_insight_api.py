"""History, ratings, analytics, document statistics and the answer cache against a real server
(extractive answers, a data directory of its own so every count below is exact)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support import Server, ragline, wait_for_status

GUIDE = b"""# Billing

Invoices are due within 30 days of the invoice date. Late payments accrue a fee of 2% per month.

# Security

API keys must be rotated every 90 days. Production access requires two-factor authentication.
"""
GARDEN = "Tomatoes need at least 6 hours of direct sunlight a day. Water them deeply twice a week."
INVOICES = "When are invoices due?"
OFF_TOPIC = "What is the capital of Mongolia?"


@dataclass
class World:
    server: Server
    t1: httpx.Client
    t2: httpx.Client
    guide_id: str
    garden_id: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("insight")
    env = {"ANTHROPIC_API_KEY": ""}  # extractive answers
    keys = {
        t: ragline("keys", "create", "--tenant", t, "--data-dir", str(data_dir), env=env).strip() for t in ("t1", "t2")
    }
    server = Server(data_dir, env=env).start()
    t1 = httpx.Client(base_url=server.url, headers={"x-api-key": keys["t1"]}, timeout=60)
    t2 = httpx.Client(base_url=server.url, headers={"x-api-key": keys["t2"]}, timeout=60)
    try:
        guide = t1.post("/v1/kb/documents", files={"file": ("guide.md", GUIDE, "text/markdown")})
        garden = t1.post("/v1/kb/documents", json={"title": "Garden guide", "text": GARDEN, "external_id": "garden"})
        assert guide.status_code == garden.status_code == 202, (guide.text, garden.text)
        guide_id, garden_id = guide.json()["data"]["document_id"], garden.json()["data"]["document_id"]
        for document_id in (guide_id, garden_id):
            wait_for_status(t1, document_id, ("indexed",))
        t2.post("/v1/kb/chat", json={"query": INVOICES})  # another tenant's question: never counted for t1
        yield World(server, t1, t2, guide_id, garden_id)
    finally:
        t1.close()
        t2.close()
        server.stop()


def ask(client: httpx.Client, query: str, **body) -> dict:
    answer = client.post("/v1/kb/chat", json={"query": query, **body})
    assert answer.status_code == 200, answer.text
    return answer.json()


def stream(client: httpx.Client, query: str) -> list[dict]:
    with client.stream("POST", "/v1/kb/chat/stream", json={"query": query}) as response:
        assert response.status_code == 200
        frames = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    return [json.loads(f) for f in frames[:-1]]


# The tests below run in file order: each builds on what the previous ones recorded.
def test_a_chat_answer_carries_timings_sources_used_and_sections(world: World) -> None:
    first = ask(world.t1, INVOICES)
    assert first["cached"] is False
    assert set(first["timings"]) == {"embed_ms", "retrieve_ms", "generate_ms"}
    assert first["timings"]["embed_ms"] > 0 and first["timings"]["retrieve_ms"] > 0
    assert first["query_time_ms"] == first["latency_ms"] > 0
    assert first["sources"][0]["document_id"] == world.guide_id
    assert first["sources"][0]["section"] == "Billing"
    assert first["sources_used"][0] == "guide.md"
    assert 0 < first["confidence"] <= 1


def test_the_same_normalised_question_is_answered_from_the_cache(world: World) -> None:
    fresh = ask(world.t1, INVOICES)  # asked once already (previous test), nothing changed since
    again = ask(world.t1, "  when ARE invoices due  ")
    for hit in (fresh, again):
        assert hit["cached"] is True
        assert hit["timings"] == {"embed_ms": 0, "retrieve_ms": 0, "generate_ms": 0}
        assert hit["usage"] == {"input_tokens": 0, "output_tokens": 0}  # no model call
    assert fresh["query_id"] != again["query_id"]
    assert fresh["answer"] == again["answer"] and fresh["sources"] == again["sources"]
    # Other filters or model parameters are another question.
    assert ask(world.t1, INVOICES, limit=2)["cached"] is False
    assert ask(world.t1, INVOICES, filters={"document_id": world.guide_id})["cached"] is False
    # Another tenant asking the same question never gets t1's answer.
    other = ask(world.t2, INVOICES)
    assert other["sources"] == [] and other["cached"] is True  # t2's own first answer (fixture), cached


def test_the_stream_reports_the_same_fields_and_is_recorded(world: World) -> None:
    events = stream(world.t1, OFF_TOPIC)
    done = events[-1]["data"]
    assert events[-1]["event"] == "done"
    assert done["cached"] is False and done["sources_used"] == []
    assert set(done["timings"]) == {"embed_ms", "retrieve_ms", "generate_ms"} and done["query_time_ms"] > 0
    again = stream(world.t1, OFF_TOPIC)
    assert again[-1]["data"]["cached"] is True
    assert "".join(e["data"]["content"] for e in again if e["event"] == "message")
    assert world.t1.get(f"/v1/queries/{done['query_id']}").json()["answered"] is False


def test_history_pages_newest_first_with_and_without_answers(world: World) -> None:
    # Recorded so far for t1: 5 chats (test 1, 2) + 2 streams = 7.
    page = world.t1.get("/v1/queries/history", params={"limit": 3}).json()
    assert (page["total"], page["limit"], page["offset"], len(page["queries"])) == (7, 3, 0, 3)
    assert [q["question"] for q in page["queries"][:2]] == [OFF_TOPIC, OFF_TOPIC]
    assert "answer" not in page["queries"][0]
    assert set(page["queries"][0]) == {"query_id", "question", "timestamp", "confidence", "rating", "query_time_ms"}
    with_answers = world.t1.get("/v1/queries/history", params={"limit": 100, "include_answer": "true"}).json()
    assert len(with_answers["queries"]) == 7 and all(q["answer"] for q in with_answers["queries"])
    ids = [q["query_id"] for q in with_answers["queries"]]
    assert ids == sorted(ids, reverse=True)
    rest = world.t1.get("/v1/queries/history", params={"limit": 5, "offset": 5}).json()
    assert [q["query_id"] for q in rest["queries"]] == ids[5:]
    past = world.t1.get("/v1/queries/history", params={"offset": 50})
    assert past.status_code == 200 and past.json() == {"queries": [], "total": 7, "limit": 20, "offset": 50}
    for bad in ({"limit": 0}, {"limit": 101}, {"offset": -1}):
        refused = world.t1.get("/v1/queries/history", params=bad)
        assert refused.status_code == 422, bad
        assert refused.json()["code"] == 422 and refused.json()["details"]
    assert world.t2.get("/v1/queries/history").json()["total"] == 2  # its own two only


def test_one_query_in_detail(world: World) -> None:
    newest_invoice = next(
        q
        for q in world.t1.get("/v1/queries/history", params={"limit": 100}).json()["queries"]
        if q["question"] == INVOICES
    )
    detail = world.t1.get(f"/v1/queries/{newest_invoice['query_id']}").json()
    assert detail["question"] == INVOICES and detail["answer"]
    assert detail["filters"] == {"document_id": world.guide_id} and detail["kb_id"] is None
    assert detail["sources"][0] == {"document_id": world.guide_id, "page": None, "score": detail["sources"][0]["score"]}
    assert detail["model"] and set(detail["usage"]) == {"input_tokens", "output_tokens"}
    assert detail["cached"] is False and set(detail["timings"]) == {"embed_ms", "retrieve_ms", "generate_ms"}


def test_ratings_in_and_out_of_range(world: World) -> None:
    queries = world.t1.get("/v1/queries/history", params={"limit": 100}).json()["queries"]
    first, second = queries[-1]["query_id"], queries[-2]["query_id"]
    rated = world.t1.patch(f"/v1/queries/{first}/rating", json={"rating": 2, "comment": "too short"})
    assert rated.status_code == 200
    assert rated.json() == {"message": "Rating saved", "query_id": first, "rating": 2}
    assert world.t1.patch(f"/v1/queries/{first}/rating", json={"rating": 4}).status_code == 200  # replaces 2
    assert world.t1.patch(f"/v1/queries/{second}/rating", json={"rating": 5}).status_code == 200
    assert world.t1.get(f"/v1/queries/{first}").json()["rating"] == 4
    for bad in (0, 6, "five", None):
        refused = world.t1.patch(f"/v1/queries/{first}/rating", json={"rating": bad})
        assert refused.status_code == 422, bad
        body = refused.json()
        assert body["code"] == 422 and body["error"] and body["message"] and body["details"]
    assert world.t1.get(f"/v1/queries/{first}").json()["rating"] == 4


def test_analytics_after_the_known_sequence(world: World) -> None:
    popular = world.t1.get("/v1/analytics/popular", params={"period_days": 7, "limit": 10}).json()
    assert popular["top_questions"] == [
        {"question": "when are invoices due", "count": 5},
        {"question": "what is the capital of mongolia", "count": 2},
    ]
    # Cited: the guide by the 5 invoice answers (cached ones included); nothing by the off-topic ones.
    top = popular["top_documents"]
    assert top[0] == {"document_id": world.guide_id, "title": top[0]["title"], "reference_count": 5}
    assert top[0]["title"]
    assert all(d["document_id"] != world.garden_id or d["reference_count"] < 5 for d in top)
    usage = world.t1.get("/v1/analytics/usage", params={"period_days": 7}).json()
    assert usage["total_questions"] == 7
    assert sum(d["count"] for d in usage["questions_per_day"]) == 7
    assert usage["unanswered_share"] == round(2 / 7, 4)
    assert usage["cached_share"] == round(3 / 7, 4)
    assert (usage["average_rating"], usage["rated_questions"]) == (4.5, 2)
    assert 0 < usage["latency_ms"]["p50"] <= usage["latency_ms"]["p95"]
    assert world.t1.get("/v1/analytics/popular", params={"limit": 101}).status_code == 422
    assert world.t1.get("/v1/analytics/usage", params={"period_days": 0}).status_code == 422


def test_document_stats_after_known_citations(world: World) -> None:
    for path in (f"/v1/documents/{world.guide_id}/stats", f"/v1/kb/documents/{world.guide_id}/stats"):
        stats = world.t1.get(path).json()
        assert stats["document_id"] == world.guide_id and stats["filename"] == "guide.md"
        assert stats["status"] == "indexed" and stats["chunk_count"] >= 1 and stats["size_bytes"] == len(GUIDE)
        assert stats["sections"] == ["Billing", "Security"]
        assert stats["query_count"] == 5 and stats["last_referenced_at"]
        assert stats["processing_time_ms"] >= 0 and stats["indexed_at"] >= stats["created_at"]
    garden = world.t1.get(f"/v1/documents/{world.garden_id}/stats").json()
    assert garden["sections"] == [] and garden["page_count"] == 0


def test_another_tenants_ids_are_404_and_never_leak(world: World) -> None:
    mine = world.t1.get("/v1/queries/history").json()["queries"][0]["query_id"]
    for method, path, body, own_id in (
        ("GET", "/v1/queries/{}", None, mine),
        ("DELETE", "/v1/queries/{}", None, mine),
        ("PATCH", "/v1/queries/{}/rating", {"rating": 1}, mine),
        ("GET", "/v1/documents/{}/stats", None, world.guide_id),
        ("GET", "/v1/kb/documents/{}/stats", None, world.guide_id),
    ):
        answer = world.t2.request(method, path.format(own_id), json=body)
        missing = world.t2.request(method, path.format("x_does_not_exist"), json=body)
        assert answer.status_code == missing.status_code == 404, (method, path)
        # Exactly the answer for an id that does not exist (the message names the id the caller sent).
        assert answer.text.replace(own_id, "x_does_not_exist") == missing.text
    assert world.t1.get(f"/v1/queries/{mine}").json()["rating"] is None  # t2's rating did not land
    popular = world.t2.get("/v1/analytics/popular").json()
    assert popular["top_questions"] == [{"question": "when are invoices due", "count": 2}]
    assert popular["top_documents"] == []
    assert world.t2.get("/v1/analytics/usage").json()["total_questions"] == 2


def test_deleting_a_query(world: World) -> None:
    mine = world.t1.get("/v1/queries/history").json()["queries"][0]["query_id"]
    deleted = world.t1.delete(f"/v1/queries/{mine}")
    assert deleted.status_code == 200 and deleted.json()["data"]["query_id"] == mine
    assert world.t1.get(f"/v1/queries/{mine}").status_code == 404
    assert world.t1.delete(f"/v1/queries/{mine}").status_code == 404
    assert world.t1.get("/v1/queries/history").json()["total"] == 6


def _cached_now(world: World) -> bool:
    ask(world.t1, INVOICES)  # fill the cache if a change emptied it
    return ask(world.t1, INVOICES)["cached"]


def test_the_cache_is_invalidated_by_an_upload(world: World) -> None:
    assert _cached_now(world) is True
    accepted = world.t1.post("/v1/kb/documents", json={"title": "Payroll", "text": "Salaries are paid monthly."})
    wait_for_status(world.t1, accepted.json()["data"]["document_id"], ("indexed",))
    assert ask(world.t1, INVOICES)["cached"] is False


def test_the_cache_is_invalidated_by_a_new_version(world: World) -> None:
    assert _cached_now(world) is True
    updated = world.t1.post(
        "/v1/kb/documents",
        json={"title": "Garden guide", "text": GARDEN + " Invoices are never due.", "external_id": "garden"},
    )
    assert updated.json()["data"]["document_id"] == world.garden_id
    wait_for_status(world.t1, world.garden_id, ("indexed",))
    body = world.t1.get(f"/v1/kb/documents/{world.garden_id}").json()
    assert body["status"] == "indexed"
    assert ask(world.t1, INVOICES)["cached"] is False


def test_the_cache_is_invalidated_by_a_delete(world: World) -> None:
    assert _cached_now(world) is True
    assert world.t1.delete(f"/v1/kb/documents/{world.garden_id}").status_code == 200
    assert ask(world.t1, INVOICES)["cached"] is False


def test_another_tenants_change_does_not_invalidate(world: World) -> None:
    assert _cached_now(world) is True
    accepted = world.t2.post("/v1/kb/documents", json={"title": "t2", "text": "Invoices of t2 are due in 5 days."})
    wait_for_status(world.t2, accepted.json()["data"]["document_id"], ("indexed",))
    assert ask(world.t1, INVOICES)["cached"] is True
