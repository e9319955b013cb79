"""RateLimiter contract: the in-memory counters and the DynamoDB ones (one table, under moto) count
alike, and under a race at the limit exactly ``limit`` requests are let in."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from ragline.adapters.aws.clients import client
from ragline.adapters.aws.dynamodb.rate_limits import DynamoRateLimiter, counter_key
from ragline.adapters.aws.dynamodb.table import TTL_ATTRIBUTE, serialize, table_definitions
from ragline.adapters.local.memory_rate_limits import InMemoryRateLimiter
from ragline.ports import RateLimiter
from ragline.rate_limits import Window
from tests.contract.conftest import TWINS

T0 = 1_800_000_000
W = Window(T0)


@pytest.fixture(params=TWINS)
def make_limiter(request: pytest.FixtureRequest) -> Callable[[], RateLimiter]:
    """Makes limiters that share their counters: one per server process, or one per Lambda container."""
    if request.param == "local":
        shared = InMemoryRateLimiter()
        return lambda: shared
    request.getfixturevalue("aws")
    for definition in table_definitions("ragline-test"):
        client("dynamodb").create_table(**definition)
    return lambda: DynamoRateLimiter("ragline-test")


@pytest.fixture
def limiter(make_limiter: Callable[[], RateLimiter]) -> RateLimiter:
    return make_limiter()


def test_counts_up_to_the_limit_then_refuses_without_counting(limiter: RateLimiter) -> None:
    assert [limiter.acquire("key_a", W, 3) for _ in range(5)] == [1, 2, 3, None, None]
    assert limiter.acquire("key_a", W, 4) == 4  # refusals were not counted: a raised limit has one left


def test_keys_are_counted_apart(limiter: RateLimiter) -> None:
    assert [limiter.acquire("key_a", W, 2) for _ in range(3)] == [1, 2, None]
    assert [limiter.acquire("key_b", W, 2) for _ in range(3)] == [1, 2, None]


def test_the_next_window_starts_from_zero(limiter: RateLimiter) -> None:
    assert [limiter.acquire("key_a", W, 2) for _ in range(3)] == [1, 2, None]
    later = Window(W.end)
    assert [limiter.acquire("key_a", later, 2) for _ in range(3)] == [1, 2, None]


def test_a_lowered_limit_refuses_at_once(limiter: RateLimiter) -> None:
    assert [limiter.acquire("key_a", W, 10) for _ in range(4)] == [1, 2, 3, 4]
    assert limiter.acquire("key_a", W, 3) is None


@pytest.mark.parametrize(("threads", "limit"), [(24, 10), (12, 1)])
def test_a_race_at_the_limit_lets_exactly_the_limit_in(
    make_limiter: Callable[[], RateLimiter], threads: int, limit: int
) -> None:
    """N threads (each with its own limiter: a process or container each) start together at an
    almost full window; exactly ``limit`` requests are counted, with distinct counts."""
    limiters = [make_limiter() for _ in range(threads)]
    assert limiters[0].acquire("key_a", W, limit) == 1  # the window is already in use
    barrier = threading.Barrier(threads)
    results: list[int | None] = [None] * threads
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait()
            results[n] = limiters[n].acquire("key_a", W, limit)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not errors, errors
    admitted = sorted(r for r in results if r is not None)
    assert admitted == list(range(2, limit + 1))  # 1 was taken before the race
    assert limiters[0].acquire("key_a", W, limit) is None


def test_dynamodb_counters_expire_by_ttl_after_their_window(make_limiter: Callable[[], RateLimiter]) -> None:
    limiter = make_limiter()
    if not isinstance(limiter, DynamoRateLimiter):
        pytest.skip("the table's TTL is the DynamoDB twin's")
    limiter.acquire("key_a", W, 5)
    item = client("dynamodb").get_item(TableName="ragline-test", Key=serialize(counter_key("key_a", W)))["Item"]
    assert int(item["n"]["N"]) == 1
    assert int(item[TTL_ATTRIBUTE]["N"]) == W.end + W.seconds
