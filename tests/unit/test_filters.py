import pytest

from ragline.errors import BadRequest, Forbidden
from ragline.retrieval.filters import (
    And,
    Exists,
    MatchAll,
    Not,
    Or,
    Range,
    Term,
    matches,
    parse_filter,
    scope_to_tenant,
    tenant_of,
)

PARSE_TABLE = [
    ({}, MatchAll()),
    (None, MatchAll()),
    ({"source": "web"}, Term("source", ("web",))),
    ({"tag_ids": ["a", "b"]}, Term("tag_ids", ("a", "b"))),
    ({"metadata.team": {"$eq": "eng"}}, Term("metadata.team", ("eng",))),
    ({"metadata.team": {"$ne": "eng"}}, Not(Term("metadata.team", ("eng",)))),
    ({"metadata.team": {"$in": ["eng", "ops"]}}, Term("metadata.team", ("eng", "ops"))),
    ({"metadata.team": {"$nin": ["eng"]}}, Not(Term("metadata.team", ("eng",)))),
    ({"page": {"$gt": 2}}, Range("page", "$gt", 2)),
    (
        {"metadata.year": {"$gte": 2020, "$lt": 2024}},
        And((Range("metadata.year", "$gte", 2020), Range("metadata.year", "$lt", 2024))),
    ),
    ({"metadata.a": {"$exists": True}}, Exists("metadata.a")),
    ({"metadata.a": {"$exists": False}}, Not(Exists("metadata.a"))),
    ({"$or": [{"source": "a"}, {"source": "b"}]}, Or((Term("source", ("a",)), Term("source", ("b",))))),
    ({"$and": [{"source": "a"}], "kb_id": "k"}, And((And((Term("source", ("a",)),)), Term("kb_id", ("k",))))),
    ({"metadata.nested.key": True}, Term("metadata.nested.key", (True,))),
]


@pytest.mark.parametrize(("spec", "expected"), PARSE_TABLE)
def test_parse_filter(spec, expected):
    assert parse_filter(spec) == expected


BAD_TABLE = [
    ({"colour": "red"}, "unknown filter field"),
    ({"metadata.": "x"}, "unknown filter field"),
    ({"metadata.a.$b": "x"}, "unknown filter field"),
    ({"source": {"$regex": "a.*"}}, "unknown filter operator"),
    ({"$not": {"source": "a"}}, "unknown filter operator"),
    ({"source": {}}, "empty operator object"),
    ({"source": None}, "null"),
    ({"source": {"$in": "a"}}, "takes a list"),
    ({"source": {"$exists": "yes"}}, "true or false"),
    ({"page": {"$gt": [1]}}, "number or a string"),
    ({"page": {"$gt": True}}, "number or a string"),
    ({"source": {"a": 1}}, "unknown filter operator"),
    ({"$or": []}, "non-empty list"),
    ({"$and": {"source": "a"}}, "non-empty list"),
    ({"source": [{"a": 1}]}, "string, number or boolean"),
    ("source=a", "JSON object"),
    ({"page": float("nan")}, "finite"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_TABLE)
def test_bad_filters_are_400s(spec, message):
    with pytest.raises(BadRequest) as info:
        parse_filter(spec)
    assert message in info.value.message
    assert info.value.status == 400


def test_deep_nesting_is_refused():
    spec: dict = {"source": "a"}
    for _ in range(20):
        spec = {"$and": [spec]}
    with pytest.raises(BadRequest):
        parse_filter(spec)


TENANT_TABLE = [
    ({}, "t1", Term("tenant_id", ("t1",))),
    ({"tenant_id": "t1"}, "t1", And((Term("tenant_id", ("t1",)), Term("tenant_id", ("t1",))))),
    ({"source": "x"}, "t1", And((Term("tenant_id", ("t1",)), Term("source", ("x",))))),
]


@pytest.mark.parametrize(("spec", "tenant", "expected"), TENANT_TABLE)
def test_scope_to_tenant_always_adds_the_key_tenant(spec, tenant, expected):
    node = scope_to_tenant(spec, tenant)
    assert node == expected
    assert tenant_of(node) == tenant


@pytest.mark.parametrize(
    "spec",
    [
        {"tenant_id": "t2"},
        {"tenant_id": {"$in": ["t1", "t2"]}},
        {"$or": [{"source": "a"}, {"tenant_id": "t2"}]},
        {"tenant_id": {"$ne": "t2"}},
    ],
)
def test_another_tenant_in_the_filter_is_forbidden(spec):
    with pytest.raises(Forbidden):
        scope_to_tenant(spec, "t1")


def test_tenant_ranges_are_refused():
    with pytest.raises(BadRequest):
        scope_to_tenant({"tenant_id": {"$gt": "a"}}, "t1")


PAYLOAD = {
    "tenant_id": "t1",
    "source": "web",
    "tag_ids": ["a", "b"],
    "page": 3,
    "metadata": {"team": "eng", "year": 2021, "flag": True, "one": 1, "deep": {"k": "v"}},
}
MATCH_TABLE = [
    ({"source": "web"}, True),
    ({"source": "api"}, False),
    ({"tag_ids": "a"}, True),
    ({"tag_ids": ["z", "b"]}, True),
    ({"tag_ids": {"$nin": ["a"]}}, False),
    ({"metadata.team": {"$ne": "ops"}}, True),
    ({"metadata.missing": {"$ne": "x"}}, True),
    ({"metadata.year": {"$gte": 2021}}, True),
    ({"metadata.year": {"$gt": 2021}}, False),
    ({"metadata.year": {"$gt": "2020"}}, False),
    ({"metadata.team": {"$gt": "a"}}, True),
    ({"metadata.flag": True}, True),
    ({"metadata.flag": 1}, False),
    ({"metadata.one": True}, False),
    ({"metadata.one": 1.0}, True),
    ({"metadata.deep.k": "v"}, True),
    ({"metadata.deep": {"$exists": True}}, False),
    ({"page": {"$lte": 3}}, True),
    ({"$or": [{"source": "api"}, {"page": 3}]}, True),
    ({"$and": [{"source": "web"}, {"page": 4}]}, False),
    ({"metadata.absent": {"$exists": False}}, True),
]


@pytest.mark.parametrize(("spec", "expected"), MATCH_TABLE)
def test_reference_semantics(spec, expected):
    assert matches(parse_filter(spec), PAYLOAD) is expected
