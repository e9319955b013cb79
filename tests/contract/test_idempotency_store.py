"""IdempotencyStore contract: SQLite and DynamoDB (one table, under moto) behave the same.

Claim, complete, replay, release; one winner among concurrent claims; expiry and stale claims taken
over; a claim taken over cannot be completed or released by its old holder."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ragline.adapters.aws.clients import client
from ragline.adapters.aws.dynamodb.idempotency import TTL_ATTRIBUTE, DynamoIdempotencyStore, record_key
from ragline.adapters.aws.dynamodb.table import serialize, table_definitions
from ragline.adapters.local.sqlite_idempotency import SqliteIdempotencyStore
from ragline.idempotency import StoredResponse
from tests.contract.conftest import TWINS

SCOPE = "t1/key_1:POST:/v1/webhooks"
DAY = 24 * 3600.0
STALE = 900.0
T0 = 1_800_000_000.0
ANSWER = StoredResponse(201, "application/json", b'{"id":"wh_1","secret":"whsec_\x00\xff"}')


@pytest.fixture(params=TWINS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SqliteIdempotencyStore | DynamoIdempotencyStore:
    if request.param == "local":
        return SqliteIdempotencyStore(tmp_path / "idempotency.db")
    request.getfixturevalue("aws")
    dynamodb = client("dynamodb")
    for definition in table_definitions("ragline-test"):
        dynamodb.create_table(**definition)
    return DynamoIdempotencyStore("ragline-test")


def claim(store, key: str, token: str, now: float = T0, scope: str = SCOPE):
    return store.claim(scope, key, token, now=now, ttl_seconds=DAY, stale_after_seconds=STALE)


def test_the_first_claim_wins_and_a_second_sees_it_in_progress(store):
    assert claim(store, "k1", "tok-a") is None
    held = claim(store, "k1", "tok-b", now=T0 + 1)
    assert held is not None
    assert (held.token, held.completed, held.fingerprint, held.response) == ("tok-a", False, None, None)
    assert held.claimed_at == pytest.approx(T0)
    assert held.expires_at == pytest.approx(T0 + DAY)


def test_a_completed_record_replays_its_answer_byte_for_byte(store):
    assert claim(store, "k1", "tok-a") is None
    assert store.complete(SCOPE, "k1", "tok-a", "fp-1", ANSWER) is True
    held = claim(store, "k1", "tok-b", now=T0 + 60)
    assert held is not None and held.completed
    assert (held.fingerprint, held.response) == ("fp-1", ANSWER)


def test_an_answer_without_a_content_type_or_body(store):
    empty = StoredResponse(204, None, b"")
    assert claim(store, "k1", "tok-a") is None
    assert store.complete(SCOPE, "k1", "tok-a", "fp", empty)
    assert claim(store, "k1", "tok-b").response == empty


def test_keys_scopes_are_independent(store):
    assert claim(store, "k1", "tok-a") is None
    assert claim(store, "k2", "tok-b") is None
    assert claim(store, "k1", "tok-c", scope="t2/key_9:POST:/v1/webhooks") is None
    assert claim(store, "k1", "tok-d", scope="t1/key_1:POST:/v1/kb/chat") is None
    assert claim(store, "k1", "tok-e").token == "tok-a"


def test_a_released_claim_can_be_claimed_again(store):
    assert claim(store, "k1", "tok-a") is None
    store.release(SCOPE, "k1", "tok-a")
    assert claim(store, "k1", "tok-b") is None
    assert claim(store, "k1", "tok-c").token == "tok-b"


def test_only_the_holder_completes_or_releases(store):
    assert claim(store, "k1", "tok-a") is None
    assert store.complete(SCOPE, "k1", "not-mine", "fp", ANSWER) is False
    store.release(SCOPE, "k1", "not-mine")
    held = claim(store, "k1", "tok-b")
    assert held.token == "tok-a" and not held.completed


def test_a_completed_record_cannot_be_released_or_completed_again(store):
    assert claim(store, "k1", "tok-a") is None
    assert store.complete(SCOPE, "k1", "tok-a", "fp-1", ANSWER)
    store.release(SCOPE, "k1", "tok-a")
    assert store.complete(SCOPE, "k1", "tok-a", "fp-2", StoredResponse(500, None, b"")) is False
    held = claim(store, "k1", "tok-b")
    assert (held.fingerprint, held.response) == ("fp-1", ANSWER)


def test_records_expire_after_their_time(store):
    assert claim(store, "k1", "tok-a") is None
    assert store.complete(SCOPE, "k1", "tok-a", "fp-1", ANSWER)
    assert claim(store, "k1", "tok-b", now=T0 + DAY - 1).completed  # still live a second before
    assert claim(store, "k1", "tok-c", now=T0 + DAY) is None  # then gone: a new claim
    held = claim(store, "k1", "tok-d", now=T0 + DAY + 1)
    assert (held.token, held.completed) == ("tok-c", False)


def test_a_stale_claim_is_taken_over_and_its_old_holder_cannot_finish(store):
    assert claim(store, "k1", "tok-dead") is None
    assert claim(store, "k1", "tok-b", now=T0 + STALE - 1).token == "tok-dead"  # still running
    assert claim(store, "k1", "tok-new", now=T0 + STALE) is None  # its process died: taken over
    assert store.complete(SCOPE, "k1", "tok-dead", "fp-old", ANSWER) is False
    store.release(SCOPE, "k1", "tok-dead")
    assert claim(store, "k1", "tok-c", now=T0 + STALE + 1).token == "tok-new"


def test_a_completed_record_never_goes_stale(store):
    assert claim(store, "k1", "tok-a") is None
    assert store.complete(SCOPE, "k1", "tok-a", "fp-1", ANSWER)
    assert claim(store, "k1", "tok-b", now=T0 + STALE * 10).token == "tok-a"


def test_concurrent_claims_have_exactly_one_winner(store):
    contenders = 16
    start = threading.Barrier(contenders)
    outcomes: dict[str, object] = {}

    def contend(token: str) -> None:
        start.wait()
        outcomes[token] = claim(store, "race", token)

    threads = [threading.Thread(target=contend, args=(f"tok-{n}",)) for n in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [token for token, held in outcomes.items() if held is None]
    assert len(outcomes) == contenders and len(winners) == 1, outcomes
    assert {held.token for held in outcomes.values() if held is not None} == set(winners)


@pytest.mark.parametrize("store", ["aws"], indirect=True)
def test_dynamodb_records_carry_the_table_ttl(store):
    assert claim(store, "k1", "tok-a") is None
    item = client("dynamodb").get_item(TableName="ragline-test", Key=serialize(record_key(SCOPE, "k1")))["Item"]
    assert int(item[TTL_ATTRIBUTE]["N"]) == int(T0 + DAY)
