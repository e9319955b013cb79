import threading
import time

import pytest

from ragline.ingest.prefetch import grouped, prefetch


def test_grouped():
    assert list(grouped(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(grouped([], 3)) == []


def test_prefetch_yields_everything_in_order():
    assert list(prefetch(iter(range(100)), depth=2)) == list(range(100))


def test_prefetch_raises_the_producers_error_after_what_it_produced():
    def items():
        yield 1
        yield 2
        raise ValueError("corrupt page 3")

    got = []
    with pytest.raises(ValueError, match="corrupt page 3"):
        for item in prefetch(items()):
            got.append(item)
    assert got == [1, 2]


def test_prefetch_overlaps_producer_and_consumer():
    def slow_items():
        for i in range(4):
            time.sleep(0.1)
            yield i

    started = time.perf_counter()
    for _ in prefetch(slow_items()):
        time.sleep(0.1)
    assert time.perf_counter() - started < 0.75  # 0.8 s if run one after the other


def test_a_consumer_that_stops_early_stops_the_producer():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    for item in prefetch(endless(), depth=2):
        if item == 5:
            break
    time.sleep(0.3)
    assert threading.active_count() == before
    assert len(produced) < 20


def test_prefetch_groups_start_early_and_grow_when_the_producer_is_ahead():
    from ragline.ingest.prefetch import prefetch_groups

    assert [x for g in prefetch_groups(iter(range(100)), 4, 16) for x in g] == list(range(100))
    assert list(prefetch_groups(iter([]), 4, 16)) == []

    def slow(n):
        for i in range(n):
            time.sleep(0.02)
            yield i

    # A slow producer: groups of about the minimum, never waiting for 16.
    groups = list(prefetch_groups(slow(12), 4, 16))
    assert [x for g in groups for x in g] == list(range(12)) and len(groups) >= 3
    assert all(len(g) >= 4 for g in groups)
    # A slow consumer: the producer gets ahead and groups fill up to the maximum.
    sizes = []
    for group in prefetch_groups(iter(range(64)), 4, 16):
        sizes.append(len(group))
        time.sleep(0.05)
    assert max(sizes) == 16


def test_prefetch_groups_hand_over_what_came_before_an_error():
    from ragline.ingest.prefetch import prefetch_groups

    def items():
        yield from range(5)
        raise ValueError("corrupt page 3")

    got = []
    with pytest.raises(ValueError, match="corrupt page 3"):
        for group in prefetch_groups(items(), 8, 16):
            got.extend(group)
    assert got == list(range(5))
