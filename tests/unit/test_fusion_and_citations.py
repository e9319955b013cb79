import pytest

from ragline.chat.citations import cited_numbers, drop_unknown_citations
from ragline.retrieval.fusion import (
    MIN_NORMALIZED_SCORE,
    Fusion,
    keyword_score,
    min_max_normalize,
    weighted_fusion,
    z_score_normalize,
)


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
    ("bm25", "saturation", "expected"),
    [(0.0, 8.0, 0.0), (-1.0, 8.0, 0.0), (8.0, 8.0, 0.5), (24.0, 8.0, 0.75), (2.0, 2.0, 0.5), (1e9, 8.0, 1.0)],
)
def test_keyword_score_is_an_absolute_saturating_scale(bm25, saturation, expected):
    assert keyword_score(bm25, saturation) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("fusion", "query_terms", "saturation"),
    [
        (Fusion(keyword_saturation=8.0), 5, 8.0),
        (Fusion(keyword_saturation=2.0, saturation_per_term=True), 5, 10.0),
        (Fusion(keyword_saturation=2.0, saturation_per_term=True), 0, 2.0),
    ],
)
def test_saturation_per_query_term(fusion, query_terms, saturation):
    assert fusion.saturation(query_terms) == saturation


def test_absolute_fusion_saturates_per_query_term_when_asked():
    fusion = Fusion("absolute", semantic_weight=0.0, keyword_saturation=4.0, saturation_per_term=True)
    assert dict(fusion.fuse([], [("a", 8.0)], depth=10, query_terms=2)) == {"a": pytest.approx(0.5)}
    assert dict(fusion.fuse([], [("a", 8.0)], depth=10, query_terms=1)) == {"a": pytest.approx(8.0 / 12.0)}


def test_absolute_fusion_is_the_convex_combination_of_absolute_scores():
    fusion = Fusion("absolute", semantic_weight=0.6, keyword_saturation=8.0)
    semantic = [("a", 0.9), ("b", 0.7)]
    keyword = [("b", 8.0), ("c", 24.0)]
    fused = dict(fusion.fuse(semantic, keyword, depth=10))
    # lists shorter than their depth hold every match: missing from one scores 0 there
    assert fused["a"] == pytest.approx(0.6 * 0.9 + 0.4 * 0.0)
    assert fused["b"] == pytest.approx(0.6 * 0.7 + 0.4 * 0.5)
    assert fused["c"] == pytest.approx(0.6 * 0.0 + 0.4 * 0.75)
    assert all(0.0 <= score <= 1.0 for score in fused.values())


def test_absolute_fusion_gives_a_result_cut_off_a_full_list_that_lists_lowest_score():
    fusion = Fusion("absolute", semantic_weight=0.5, keyword_saturation=8.0)
    fused = dict(fusion.fuse([("a", 0.9), ("b", 0.8)], [("c", 8.0), ("a", 4.0)], depth=2))
    assert fused["b"] == pytest.approx(0.5 * 0.8 + 0.5 * keyword_score(4.0, 8.0))  # keyword list full: its lowest
    assert fused["c"] == pytest.approx(0.5 * 0.8 + 0.5 * 0.5)  # semantic list full: its lowest


@pytest.mark.parametrize("method", ["absolute", "min_max"])
def test_only_absolute_scores_ignore_what_else_the_query_found(method):
    """A hit's absolute score is its own: a stronger hit elsewhere does not lower it (min-max does)."""
    fusion = Fusion(method, semantic_weight=0.5)
    alone = dict(fusion.fuse([("a", 0.7), ("z", 0.6)], [("a", 5.0), ("z", 1.0)], depth=10))
    with_better = dict(fusion.fuse([("b", 0.95), ("a", 0.7), ("z", 0.6)], [("b", 30.0), ("a", 5.0), ("z", 1.0)], 10))
    assert (alone["a"] == pytest.approx(with_better["a"])) is (method == "absolute")


def test_rrf_and_z_score_fusions_rank_agreement_first():
    semantic = [("a", 0.9), ("b", 0.8), ("c", 0.5)]
    keyword = [("b", 9.0), ("c", 5.0), ("a", 1.0)]
    for fusion in (Fusion("rrf", 0.5, rrf_k=60), Fusion("z_score", 0.5)):
        assert fusion.fuse(semantic, keyword, depth=10)[0][0] == "b"
    assert z_score_normalize([("a", 1.0), ("b", 1.0)]) == {"a": 0.0, "b": 0.0}


@pytest.mark.parametrize(
    "kwargs", [{"semantic_weight": 1.5}, {"semantic_weight": -0.1}, {"keyword_saturation": 0.0}, {"rrf_k": -1}]
)
def test_fusion_settings_are_checked(kwargs):
    with pytest.raises(ValueError):
        Fusion(**kwargs)


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
