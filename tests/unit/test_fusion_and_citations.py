import pytest

from ragline.chat.citations import cited_numbers, drop_unknown_citations
from ragline.retrieval.fusion import MIN_NORMALIZED_SCORE, min_max_normalize, weighted_fusion


@pytest.mark.parametrize(
    ("hits", "expected"),
    [
        ([], {}),
        ([("a", 5.0)], {"a": 1.0}),
        ([("a", 3.0), ("b", 3.0)], {"a": 1.0, "b": 1.0}),
        ([("a", 10.0), ("b", 5.0), ("c", 0.0)], {"a": 1.0, "b": 0.5, "c": MIN_NORMALIZED_SCORE}),
    ],
)
def test_min_max_normalize(hits, expected):
    assert min_max_normalize(hits) == pytest.approx(expected)


def test_weighted_fusion_combines_and_ranks():
    semantic = [("a", 0.9), ("b", 0.8), ("c", 0.7)]
    keyword = [("c", 12.0), ("d", 6.0), ("a", 0.0)]
    fused = dict(weighted_fusion([(semantic, 0.5), (keyword, 0.5)]))
    assert fused["c"] == pytest.approx((0.5 * MIN_NORMALIZED_SCORE + 0.5 * 1.0))
    assert fused["a"] == pytest.approx(0.5 * 1.0 + 0.5 * MIN_NORMALIZED_SCORE)
    assert fused["b"] == pytest.approx(0.5 * 0.5)
    assert fused["d"] == pytest.approx(0.5 * 0.5)
    ranked = [doc for doc, _ in weighted_fusion([(semantic, 0.5), (keyword, 0.5)])]
    assert ranked == ["a", "c", "b", "d"]  # a and c tie: first seen wins


def test_weighted_fusion_weights_matter():
    semantic = [("a", 0.9), ("b", 0.1)]
    keyword = [("b", 9.0), ("a", 1.0)]
    assert weighted_fusion([(semantic, 0.8), (keyword, 0.2)])[0][0] == "a"
    assert weighted_fusion([(semantic, 0.2), (keyword, 0.8)])[0][0] == "b"


def test_weighted_fusion_needs_weight():
    with pytest.raises(ValueError):
        weighted_fusion([([("a", 1.0)], 0.0)])


@pytest.mark.parametrize(
    ("answer", "numbers"),
    [("No citations.", []), ("A [1]. B [2][1]. C [10].", [1, 2, 10]), ("[3] first", [3]), ("array[0] [x]", [0])],
)
def test_cited_numbers(answer, numbers):
    assert cited_numbers(answer) == numbers


def test_drop_unknown_citations():
    assert drop_unknown_citations("A [1]. B [4]. C [0] [2].", 2) == "A [1]. B . C  [2]."


@pytest.mark.parametrize(
    "pieces",
    [
        ["A [1]. B [7]. C [2]."],
        ["A [", "1]. B [", "7", "]. C [2", "]."],
        ["A [1", "]. B [7]", ". C ", "[", "2]."],
        list("A [1]. B [7]. C [2]."),
    ],
)
def test_streaming_filter_equals_the_whole_answer_filter(pieces):
    from ragline.chat.citations import StreamingCitationFilter

    stream = StreamingCitationFilter(source_count=2)
    out = "".join(stream.feed(p) for p in pieces) + stream.flush()
    assert out == drop_unknown_citations("".join(pieces), 2) == "A [1]. B . C [2]."


def test_streaming_filter_releases_brackets_that_are_not_citations():
    from ragline.chat.citations import StreamingCitationFilter

    stream = StreamingCitationFilter(source_count=2)
    assert stream.feed("see [") == "see "
    assert stream.feed("x] and [") == "[x] and "
    assert stream.flush() == "["
