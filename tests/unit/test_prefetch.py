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
