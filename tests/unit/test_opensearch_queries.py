"""The OpenSearch request builders: filter translation, golden request bodies, answer parsing.

Golden files live in tests/golden/opensearch/. After an intended change, rewrite them with
RAGLINE_UPDATE_GOLDEN=1 and review the diff like code.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragline.adapters.aws.opensearch import queries as q
from ragline.adapters.aws.opensearch.index import OpenSearchVectorIndex
from ragline.adapters.aws.opensearch.settings import OpenSearchSettings
from ragline.chunks import number_value
from ragline.models import IndexedChunk
from ragline.retrieval.filters import (
    And,
    Exists,
    FilterNode,
    MatchAll,
    Not,
    Or,
    Range,
    Term,
    matches,
    parse_filter,
    scope_to_tenant,
)
from tests.unit.test_chunks import AGREEMENT

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "opensearch"
SEP = q.TOKEN_SEPARATOR


def canonical(value: Any) -> str:
    """Exact comparison: 1 and 1.0, true and 1 differ here although Python calls them equal."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True, indent=2)


def assert_golden(name: str, value: Any, folder: Path = GOLDEN) -> None:
    path = folder / name
    if os.environ.get("RAGLINE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=2, ensure_ascii=True) + "\n")
    assert path.exists(), f"{path} is missing: run with RAGLINE_UPDATE_GOLDEN=1 to write it"
    assert canonical(value) == canonical(json.loads(path.read_text())), f"{name} differs from its golden file"


def tok(field: str, kind: str, text: str) -> str:
    return f"{field}{SEP}{kind}:{text}"


def num(value: float) -> str:
    return q.sortable_number(value)


# ---- filter translation, one operator per row ----------------------------------------------------
TRANSLATIONS: list[tuple[str, FilterNode, dict[str, Any]]] = [
    ("string equality", Term("source", ("web",)), {"term": {"filter_terms": tok("source", "s", "web")}}),
    (
        "$in on a list field",
        Term("tag_ids", ("a", "c")),
        {"terms": {"filter_terms": [tok("tag_ids", "s", "a"), tok("tag_ids", "s", "c")]}},
    ),
    ("integer equality", Term("page", (3,)), {"term": {"filter_terms": tok("page", "n", num(3))}}),
    (
        "float equals int",
        Term("metadata.year", (2020.0,)),
        {"term": {"filter_terms": tok("metadata.year", "n", num(2020))}},
    ),
    (
        "2020 and 2020.0 are one value",
        Term("metadata.year", (2020, 2020.0)),
        {"term": {"filter_terms": tok("metadata.year", "n", num(2020))}},
    ),
    ("boolean equality", Term("metadata.flag", (True,)), {"term": {"filter_terms": tok("metadata.flag", "b", "true")}}),
    (
        "kinds never mix",
        Term("metadata.v", ("1", 1, True)),
        {
            "terms": {
                "filter_terms": [
                    tok("metadata.v", "s", "1"),
                    tok("metadata.v", "n", num(1)),
                    tok("metadata.v", "b", "true"),
                ]
            }
        },
    ),
    ("tenant is its own keyword field", Term("tenant_id", ("t1",)), {"term": {"tenant_id": "t1"}}),
    ("document ids", Term("document_id", ("a", "b")), {"terms": {"document_id": ["a", "b"]}}),
    ("a number never equals a system string", Term("document_id", (7,)), {"match_none": {}}),
    (
        "$gt number",
        Range("page", "$gt", 2),
        {"range": {"filter_terms": {"gt": tok("page", "n", num(2)), "lt": f"page{SEP}n;"}}},
    ),
    (
        "$gte number",
        Range("metadata.score", "$gte", -1.5),
        {"range": {"filter_terms": {"gte": tok("metadata.score", "n", num(-1.5)), "lt": f"metadata.score{SEP}n;"}}},
    ),
    (
        "$lt number",
        Range("metadata.year", "$lt", 2021),
        {"range": {"filter_terms": {"gte": tok("metadata.year", "n", ""), "lt": tok("metadata.year", "n", num(2021))}}},
    ),
    (
        "$lte string",
        Range("metadata.team", "$lte", "m"),
        {"range": {"filter_terms": {"gte": tok("metadata.team", "s", ""), "lte": tok("metadata.team", "s", "m")}}},
    ),
    (
        "$gt string",
        Range("metadata.year", "$gt", "2019"),
        {"range": {"filter_terms": {"gt": tok("metadata.year", "s", "2019"), "lt": f"metadata.year{SEP}s;"}}},
    ),
    ("range on a system field", Range("document_id", "$gte", "m"), {"range": {"document_id": {"gte": "m"}}}),
    ("numeric range on a system field", Range("document_id", "$lt", 3), {"match_none": {}}),
    ("$exists true", Exists("metadata.team"), {"term": {"filter_fields": "metadata.team"}}),
    ("system fields always exist", Exists("tenant_id"), {"match_all": {}}),
    (
        "$exists false",
        Not(Exists("page")),
        {"bool": {"must_not": [{"term": {"filter_fields": "page"}}]}},
    ),
    (
        "$ne (matches chunks without the field too)",
        Not(Term("metadata.team", ("eng",))),
        {"bool": {"must_not": [{"term": {"filter_terms": tok("metadata.team", "s", "eng")}}]}},
    ),
    (
        "$nin",
        Not(Term("tag_ids", ("b", "d"))),
        {"bool": {"must_not": [{"terms": {"filter_terms": [tok("tag_ids", "s", "b"), tok("tag_ids", "s", "d")]}}]}},
    ),
    (
        "$and",
        And((Term("source", ("web",)), Exists("page"))),
        {
            "bool": {
                "filter": [{"term": {"filter_terms": tok("source", "s", "web")}}, {"term": {"filter_fields": "page"}}]
            }
        },
    ),
    (
        "$or",
        Or((Term("source", ("web",)), Term("source", ("api",)))),
        {
            "bool": {
                "should": [
                    {"term": {"filter_terms": tok("source", "s", "web")}},
                    {"term": {"filter_terms": tok("source", "s", "api")}},
                ],
                "minimum_should_match": 1,
            }
        },
    ),
    ("match all", MatchAll(), {"match_all": {}}),
    (
        "nesting",
        And((Term("tenant_id", ("t1",)), Or((Not(Exists("metadata.team")), And((Range("page", "$lte", 1),)))))),
        {
            "bool": {
                "filter": [
                    {"term": {"tenant_id": "t1"}},
                    {
                        "bool": {
                            "should": [
                                {"bool": {"must_not": [{"term": {"filter_fields": "metadata.team"}}]}},
                                {
                                    "bool": {
                                        "filter": [
                                            {
                                                "range": {
                                                    "filter_terms": {
                                                        "gte": tok("page", "n", ""),
                                                        "lte": tok("page", "n", num(1)),
                                                    }
                                                }
                                            }
                                        ]
                                    }
                                },
                            ],
                            "minimum_should_match": 1,
                        }
                    },
                ]
            }
        },
    ),
]


@pytest.mark.parametrize(
    "node, expected", [(node, dsl) for _, node, dsl in TRANSLATIONS], ids=[n for n, _, _ in TRANSLATIONS]
)
def test_filter_translation(node, expected):
    assert canonical(q.to_dsl(node)) == canonical(expected)


def test_translation_of_a_parsed_api_filter():
    flt = scope_to_tenant({"metadata.team": {"$in": ["eng", "ops"]}, "page": {"$gte": 2, "$lt": 10}}, "t1")
    assert_golden("filter_api_example.json", q.to_dsl(flt))


def test_unknown_nodes_raise():
    with pytest.raises(TypeError, match="unknown filter node"):
        q.to_dsl("not a node")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        q.to_dsl(And((Term("source", ("web",)), object())))  # type: ignore[arg-type]


ANY_FILTERS = [
    MatchAll(),
    Term("source", ("web",)),
    Term("tenant_id", ("t2",)),  # another tenant: both terms must hold, so nothing matches
    And((Term("source", ("web",)), Term("tenant_id", ("t1",)))),
    Or((Term("tenant_id", ("t2",)), Term("source", ("web",)))),
    Not(Term("tenant_id", ("t1",))),
]
TENANT_T1 = {"term": {"tenant_id": "t1"}}
READ_BUILDERS = {  # the builder, and where its filter-context clauses are
    "knn_query": (
        lambda flt: q.knn_query("t1", [1.0, 0.0], flt, 5, 100),
        lambda body: body["query"]["knn"]["embedding"]["filter"]["bool"]["filter"],
    ),
    "keyword_query": (lambda flt: q.keyword_query("t1", "words", flt, 5), lambda body: body["query"]["bool"]["filter"]),
    "count_query": (lambda flt: q.count_query("t1", flt), lambda body: body["query"]["bool"]["filter"]),
}


@pytest.mark.parametrize("build, clauses", READ_BUILDERS.values(), ids=READ_BUILDERS.keys())
@pytest.mark.parametrize("flt", ANY_FILTERS, ids=repr)
def test_reads_always_carry_the_given_tenants_term_then_the_filter(build, clauses, flt):
    expected = [TENANT_T1] if isinstance(flt, MatchAll) else [TENANT_T1, q.to_dsl(flt)]
    assert clauses(build(flt)) == expected


def test_payload_reads_carry_the_tenants_term():
    assert q.payloads_query("t1", ["a-v1-00000"])["query"]["bool"]["filter"][0] == TENANT_T1


# ---- golden request bodies ------------------------------------------------------------------------
FLT = parse_filter({"metadata.team": {"$in": ["eng", "ops"]}, "page": {"$gte": 2}})
QUERY_VECTOR = [0.6, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1]


def test_index_definition_golden():
    assert_golden(
        "index_definition.json",
        q.index_definition(8, m=16, ef_construction=100, ef_search=256, shards=2, replicas=1, alias="ragline-chunks"),
    )


def test_index_definition_for_older_clusters_and_serverless():
    assert_golden(
        "index_definition_innerproduct_unrouted.json",
        q.index_definition(8, space_type="innerproduct", routing_required=False),
    )


def test_infra_index_definition_is_what_the_adapter_creates():
    """infra/opensearch/index-v1.json: the definition for the default model (384 dims) and settings."""
    adapter = OpenSearchVectorIndex(OpenSearchSettings(url="http://localhost:9200"), 384)  # no request is sent
    assert_golden("index-v1.json", adapter.index_definition(), folder=REPO / "infra" / "opensearch")


def test_knn_query_golden():
    assert_golden("knn_query.json", q.knn_query("t1", np.array(QUERY_VECTOR, dtype=np.float32), FLT, 10, 256))


def test_knn_query_raises_ef_search_to_k():
    body = q.knn_query("t1", QUERY_VECTOR, FLT, 300, 100)
    assert body["query"]["knn"]["embedding"]["method_parameters"] == {"ef_search": 300}
    assert body["query"]["knn"]["embedding"]["filter"] == {
        "bool": {"filter": q.tenant_filters("t1", FLT)}
    }  # inside knn


def test_keyword_query_golden():
    assert_golden("keyword_query.json", q.keyword_query("t1", "return policies", FLT, 10))


def test_count_golden():
    assert_golden("count_query.json", q.count_query("t1", FLT))


def test_delete_queries_golden():
    keep = ["d1-v2-00000", "d1-v2-00001"]  # the new version: every other version goes
    assert_golden("delete_by_document_query.json", q.delete_by_document_query("t1", "d1", keep))
    assert_golden("delete_by_document_query_all.json", q.delete_by_document_query("t1", "d1"))


def test_replace_window_queries_golden():
    ids = ["d1-v2-00000", "d1-v2-00001"]
    assert_golden("other_chunks_query.json", q.other_chunks_query("t1", "d1", ids))
    assert_golden("delete_chunks_query.json", q.delete_chunks_query("t1", "d1", ids))
    with pytest.raises(ValueError, match="name the chunks"):
        q.delete_chunks_query("t1", "d1", [])


def test_payloads_query_and_alias_swap_golden():
    assert_golden("payloads_query.json", q.payloads_query("t1", ["d1-v1-00000", "d2-v1-00003"]))
    # One request, remove + add: OpenSearch applies the actions of one _aliases call atomically.
    assert_golden("alias_swap.json", q.alias_swap("ragline-chunks", "ragline-chunks-v1", "ragline-chunks-v2"))


def test_reindex_bodies_golden():
    assert_golden("copy_other_tenants.json", q.copy_other_tenants("ragline-chunks-v1", "ragline-chunks-v2", "t1"))
    assert_golden("stored_chunks_query.json", q.stored_chunks_query("t1", "d1", 1000, "d1-v3-00999"))
    assert "search_after" not in q.stored_chunks_query("t1", "d1", 1000)


@pytest.mark.parametrize(
    "name, version",
    [
        ("ragline-chunks-v1", 1),
        ("ragline-chunks-v12", 12),
        ("ragline-chunks", None),
        ("ragline-chunks-v", None),
        ("ragline-chunks-v01", None),
        ("ragline-chunks-vx", None),
        ("other-v1", None),
        ("ragline-chunks-v1-old", None),
    ],
)
def test_index_versions(name, version):
    assert q.index_version("ragline-chunks", name) == version
    if version is not None:
        assert q.versioned_index_name("ragline-chunks", version) == name


def test_alias_target():
    one = {"ragline-chunks-v1": {"aliases": {"ragline-chunks": {}}}}
    assert q.alias_target("ragline-chunks", one) == "ragline-chunks-v1"
    two = {
        "ragline-chunks-v1": {"aliases": {"ragline-chunks": {"is_write_index": False}}},
        "ragline-chunks-v2": {"aliases": {"ragline-chunks": {"is_write_index": True}}},
    }
    assert q.alias_target("ragline-chunks", two) == "ragline-chunks-v2"
    ambiguous = {"a-v1": {"aliases": {"a": {}}}, "a-v2": {"aliases": {"a": {}}}}
    with pytest.raises(ValueError, match="none is its only write index"):
        q.alias_target("a", ambiguous)


def test_bulk_created_ids():
    answer = {
        "errors": True,
        "items": [
            {"index": {"_id": "a", "status": 201, "result": "created"}},
            {"index": {"_id": "b", "status": 200, "result": "updated"}},
            {"index": {"_id": "c", "status": 429, "error": {"type": "es_rejected_execution_exception"}}},
            {"index": {"_id": "d", "status": 201}},
        ],
    }
    assert q.bulk_created_ids(answer) == ["a", "d"]


def test_stored_chunks_from_hits():
    source = {"chunk_id": "d-v1-00000", "tenant_id": "t1", "document_id": "d", "text": "hi", "payload": {"version": 1}}
    (stored,) = q.stored_chunks_from_hits({"hits": {"hits": [{"_source": source}]}})
    assert stored == IndexedChunk(id="d-v1-00000", tenant_id="t1", document_id="d", text="hi", payload={"version": 1})


def chunk(document_id: str, position: int, text: str, tenant: str = "t1", **payload: Any) -> IndexedChunk:
    return IndexedChunk(
        id=f"{document_id}-v1-{position:05d}", tenant_id=tenant, document_id=document_id, text=text, payload=payload
    )


def test_bulk_actions_golden():
    chunks = [
        chunk(
            "d1",
            0,
            "Returns within 30 days.",
            kb_id="kb",
            page=1,
            tag_ids=["a", "b"],
            version=2,
            metadata={"team": "eng", "year": 2020, "flag": True, "nested": {"level": 3}},
        ),
        chunk("d1", 1, "Refunds go to the card.", kb_id="kb", page=None, version=2, metadata={}),
    ]
    vectors = np.array([[1, 0, 0, 0, 0, 0, 0, 0], [0.6, 0.8, 0, 0, 0, 0, 0, 0]], dtype=np.float32)
    assert_golden("bulk_actions.json", q.bulk_actions("ragline-chunks", chunks, vectors))


def test_bulk_actions_without_routing_and_with_mismatched_vectors():
    chunks = [chunk("d1", 0, "x")]
    lines = q.bulk_actions("idx", chunks, np.ones((1, 2), dtype=np.float32), routing=False)
    assert lines[0] == {"index": {"_index": "idx", "_id": "d1-v1-00000"}}
    with pytest.raises(ValueError, match="one vector per chunk"):
        q.bulk_actions("idx", chunks, np.ones((2, 2), dtype=np.float32))


def test_vector_values_round_trip_float32_exactly():
    rng = np.random.default_rng(3)
    vector = rng.normal(size=384).astype(np.float32)
    values = q.vector_values(vector)
    assert np.array_equal(np.array(values, dtype=np.float32), vector)
    assert all(len(repr(v).lstrip("-").replace(".", "").replace("e", "")) <= 13 for v in values)


# ---- index-side tokens ----------------------------------------------------------------------------
def test_filter_tokens_of_a_payload():
    payload = {
        "tenant_id": "t1",
        "document_id": "d1",
        "source": "web",
        "tag_ids": ["a", "b", "a", {"x": 1}],
        "page": None,
        "title": {"not": "a scalar"},
        "section": "not filterable",
        "metadata": {
            "team": "eng",
            "year": 2020.0,
            "flag": False,
            "empty": [],
            "nested": {"level": 3, "deeper": {"x": "y"}},
            "dotted.key": "unaddressable",
            "$op": "unaddressable",
            "nan": float("nan"),
        },
    }
    terms, fields = q.filter_tokens(payload)
    assert fields == [
        "source",
        "tag_ids",
        "metadata.team",
        "metadata.year",
        "metadata.flag",
        "metadata.nested.level",
        "metadata.nested.deeper.x",
        "metadata.nan",
    ]
    assert terms == [
        tok("source", "s", "web"),
        tok("tag_ids", "s", "a"),
        tok("tag_ids", "s", "b"),
        tok("metadata.team", "s", "eng"),
        tok("metadata.year", "n", num(2020)),
        tok("metadata.flag", "b", "false"),
        tok("metadata.nested.level", "n", num(3)),
        tok("metadata.nested.deeper.x", "s", "y"),
    ]


def test_sortable_numbers_sort_like_numbers():
    rng = random.Random(11)
    values = [0.0, -0.0, 1, -1, 2**53, -(2**60), math.inf, -math.inf, 1e-300, -1e-300, 10**400, -(10**400)]
    values += [rng.uniform(-1e6, 1e6) for _ in range(300)] + [rng.randint(-(10**9), 10**9) for _ in range(300)]
    encoded = sorted(values, key=q.sortable_number)
    assert [number_value(v) for v in encoded] == sorted(number_value(v) for v in values)
    assert q.sortable_number(-0.0) == q.sortable_number(0.0)
    assert q.sortable_number(2020) == q.sortable_number(2020.0)


# ---- the translation against an emulation of OpenSearch's query semantics -----------------------
def _source_tokens(source: dict[str, Any], field: str) -> list[str]:
    values = source.get(field, [])
    values = values if isinstance(values, list) else [values]
    if field in (q.FILTER_TERMS_FIELD, q.FILTER_FIELDS_FIELD):  # ignore_above: long values are not indexed
        values = [v for v in values if len(v) <= q.MAX_TOKEN_CHARS]
    return values


def _in_range(value: str, limits: dict[str, str]) -> bool:
    """Keyword ranges compare UTF-8 bytes, as Lucene's BytesRef does."""
    have = value.encode("utf-8")
    checks = {
        "gt": lambda b: have > b,
        "gte": lambda b: have >= b,
        "lt": lambda b: have < b,
        "lte": lambda b: have <= b,
    }
    return all(checks[op](bound.encode("utf-8")) for op, bound in limits.items())


def emulate(query: dict[str, Any], source: dict[str, Any]) -> bool:
    """What an OpenSearch filter context accepts, for the query shapes to_dsl writes."""
    ((kind, spec),) = query.items()
    if kind == "match_all":
        return True
    if kind == "match_none":
        return False
    if kind == "term":
        ((field, value),) = spec.items()
        return value in _source_tokens(source, field)
    if kind == "terms":
        ((field, values),) = spec.items()
        return any(v in _source_tokens(source, field) for v in values)
    if kind == "range":
        ((field, limits),) = spec.items()
        return any(_in_range(v, limits) for v in _source_tokens(source, field))
    if kind == "bool":
        ok = all(emulate(c, source) for c in spec.get("filter", []))
        ok = ok and not any(emulate(c, source) for c in spec.get("must_not", []))
        if "should" in spec:
            ok = ok and sum(emulate(c, source) for c in spec["should"]) >= spec.get("minimum_should_match", 1)
        return ok
    raise AssertionError(f"to_dsl wrote a query the emulation does not know: {kind}")


SCALARS = ["eng", "ops", "", "2020", "é", "z", "Zeta", 2019, 2020, 2020.0, -3, -0.0, 0, 1, 1.5, 10**20, True, False]


def random_payload(rng: random.Random, i: int) -> dict[str, Any]:
    def value() -> Any:
        roll = rng.random()
        if roll < 0.15:
            return None
        if roll < 0.3:
            return rng.sample(SCALARS, rng.randint(0, 3))
        if roll < 0.35:
            return {"inner": rng.choice(SCALARS)}
        return rng.choice(SCALARS)

    payload = {"tenant_id": "t1", "document_id": f"d{i:03d}", "source": rng.choice(["web", "api", 1, None])}
    payload["tag_ids"] = rng.sample(["a", "b", "c", "d"], rng.randint(0, 2))
    payload["page"] = rng.choice([None, 1, 2, 3, 10, 2.0])
    payload["metadata"] = {k: v for k in ("team", "year", "flag") if (v := value()) is not None}
    return {k: v for k, v in payload.items() if v is not None}


def random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    field = rng.choice(
        [
            "source",
            "tag_ids",
            "page",
            "metadata.team",
            "metadata.year",
            "metadata.flag",
            "metadata.year.inner",
            "document_id",
        ]
    )
    op = rng.choice(["eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"])
    if depth < 2 and rng.random() < 0.3:
        return {rng.choice(["$and", "$or"]): [random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    scalar = rng.choice(SCALARS)
    if op == "eq":
        return {field: scalar}
    if op in ("$in", "$nin"):
        return {field: {op: rng.sample(SCALARS, rng.randint(1, 3))}}
    if op == "$exists":
        return {field: {op: rng.random() < 0.5}}
    if op.startswith(("$g", "$l")):
        return {field: {op: rng.choice([s for s in SCALARS if not isinstance(s, bool)])}}
    return {field: {op: scalar}}


def test_translation_agrees_with_the_reference_semantics():
    rng = random.Random(2024)
    payloads = [random_payload(rng, i) for i in range(150)]
    sources = [
        q.chunk_source(
            IndexedChunk(
                id=f"{p['document_id']}-00000", tenant_id="t1", document_id=p["document_id"], text="x", payload=p
            ),
            [1.0],
        )
        for p in payloads
    ]
    for _ in range(400):
        spec = random_filter(rng)
        flt = scope_to_tenant(spec, "t1")
        dsl = q.to_dsl(flt)
        want = [matches(parse_filter(spec), p) for p in payloads]
        got = [emulate(dsl, s) for s in sources]
        assert got == want, spec


@pytest.mark.parametrize(("payloads", "spec", "expected"), AGREEMENT)
def test_translation_on_the_agreement_table(payloads, spec, expected):
    sources = []
    for i, payload in enumerate(payloads):
        document = payload.get("document_id", f"d{i}")
        stored = IndexedChunk(
            id=f"{document}-v1-00000", tenant_id="t1", document_id=document, text="x", payload=payload
        )
        sources.append(q.chunk_source(stored, [1.0]))
    dsl = q.to_dsl(scope_to_tenant(spec, "t1"))
    assert [emulate(dsl, source) for source in sources] == expected


def test_a_separator_in_a_path_is_doubled_in_its_tokens():
    assert q.filter_token("metadata.a\x1fb", "v") == "metadata.a\x1f\x1fb\x1fs:v"
    assert q.filter_tokens({"metadata": {"a\x1fb": "v"}}) == (["metadata.a\x1f\x1fb\x1fs:v"], ["metadata.a\x1fb"])


def test_long_string_values_are_not_filterable():
    """ignore_above: a value over MAX_TOKEN_CHARS is stored but cannot be matched (documented limit)."""
    long = "x" * q.MAX_TOKEN_CHARS
    source = q.chunk_source(chunk("d", 0, "t", metadata={"blob": long}), [1.0])
    assert not emulate(q.to_dsl(Term("metadata.blob", (long,))), source)
    assert emulate(q.to_dsl(Exists("metadata.blob")), source)


# ---- answers --------------------------------------------------------------------------------------
def hits(*pairs: tuple[str, float]) -> dict[str, Any]:
    return {"hits": {"hits": [{"_id": i, "_score": s, "_source": {"chunk_id": i}} for i, s in pairs]}}


def test_ranked_hits_break_ties_by_chunk_id():
    answer = hits(("b", 0.5), ("c", 0.9), ("a", 0.5))
    assert q.ranked_hits(answer) == [("c", 0.9), ("a", 0.5), ("b", 0.5)]


@pytest.mark.parametrize(
    "cosine, faiss_innerproduct_score",
    [(1.0, 2.0), (0.5, 1.5), (0.0, 1.0), (-0.5, 1 / 1.5), (-1.0, 0.5)],
)
def test_scores_on_the_embedded_engine_scale(cosine, faiss_innerproduct_score):
    expected = (1 + cosine) / 2
    assert q.similarity_score((1 + cosine) / 2, "cosinesimil") == pytest.approx(expected)
    assert q.similarity_score(faiss_innerproduct_score, "innerproduct") == pytest.approx(expected)


def test_scores_are_clamped_like_the_embedded_engine():
    assert q.similarity_score(1.0000001, "cosinesimil") == 1.0
    assert q.similarity_score(2.0000004, "innerproduct") == 1.0


def test_bulk_item_failures():
    answer = {
        "errors": True,
        "items": [
            {"index": {"_id": "a", "status": 201, "result": "created"}},
            {
                "index": {
                    "_id": "b",
                    "status": 429,
                    "error": {"type": "es_rejected_execution_exception", "reason": "queue full"},
                }
            },
            {"index": {"_id": "c", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "bad"}}},
        ],
    }
    assert q.bulk_item_failures(answer) == [
        q.BulkItemFailure("b", 429, "es_rejected_execution_exception", "queue full"),
        q.BulkItemFailure("c", 400, "mapper_parsing_exception", "bad"),
    ]
    assert q.bulk_item_failures({"errors": False, "items": answer["items"]}) == []


def test_bulk_batches_respect_count_and_bytes():
    lines = [q.BulkLine(chunk_id=str(i), ndjson="x" * 100 + "\n") for i in range(7)]
    assert [len(b) for b in q.bulk_batches(lines, max_actions=3, max_bytes=10_000)] == [3, 3, 1]
    assert [len(b) for b in q.bulk_batches(lines, max_actions=100, max_bytes=250)] == [2, 2, 2, 1]
    huge = [q.BulkLine(chunk_id="big", ndjson="y" * 1000 + "\n")]
    assert q.bulk_batches(huge, max_actions=10, max_bytes=100) == [huge]


def test_bulk_lines_are_ndjson_pairs():
    actions = q.bulk_actions("idx", [chunk("d", 0, "é")], np.ones((1, 2), dtype=np.float32))
    (line,) = q.bulk_lines(actions)
    action, source, end = line.ndjson.split("\n")
    assert end == "" and json.loads(action) == actions[0] and json.loads(source) == actions[1]
    assert line.size == len(line.ndjson.encode("utf-8"))


def test_payloads_from_hits():
    answer = {
        "hits": {
            "hits": [{"_source": {"chunk_id": "d-00000", "text": "hello", "payload": {"page": 2, "tenant_id": "t1"}}}]
        }
    }
    assert q.payloads_from_hits(answer) == {"d-00000": {"page": 2, "tenant_id": "t1", "text": "hello"}}


def test_index_dimension():
    mapping = {
        "ragline-chunks-v1": {"mappings": {"properties": {"embedding": {"type": "knn_vector", "dimension": 384}}}}
    }
    assert q.index_dimension(mapping) == 384
    assert q.index_dimension({"x": {"mappings": {}}}) is None
