"""The chunk id, the payload a chunk carries and its filterable values (ragline.chunks).

``AGREEMENT`` is the table every engine checks itself against: the reference semantics here,
OpenSearch's translation in test_opensearch_queries.py, the embedded engine in test_vector_index.py.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from ragline.chunks import (
    KEYWORD_FIELDS,
    NUMERIC_FIELDS,
    chunk_id,
    chunk_payload,
    chunk_version,
    document_payload,
    filterable_values,
)
from ragline.models import Document
from ragline.retrieval.filters import matches, parse_filter

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    "document_id, version, position, written",
    [
        ("doc_1", 1, 0, "doc_1-v1-00000"),
        ("doc_1", 12, 42, "doc_1-v12-00042"),
        ("a-v2-b", 3, 1, "a-v2-b-v3-00001"),  # a document id that looks like a chunk id itself
        ("d-v1-00000", 1, 7, "d-v1-00000-v1-00007"),
        ("d", 1, 123456, "d-v1-123456"),  # positions past 99999 take more digits
    ],
)
def test_chunk_ids_read_back_as_written(document_id, version, position, written):
    assert chunk_id(document_id, version, position) == written
    assert chunk_version(written) == (document_id, version)


DOCUMENT = Document(
    id="doc_1",
    tenant_id="t1",
    kb_id="handbook",
    title="Returns",
    filename="returns.pdf",
    content_type="application/pdf",
    content_sha256="0" * 64,
    external_id="ext-9",
    source="api",
    metadata={
        "user_id": "u7",
        "tag_ids": ["t-1", "t-2"],
        "tag_names": ["policy"],
        "type_name": "guide",
        "category_name": "support",
        "team": "eng",
    },
    blob_key="t1/doc_1/v2/returns.pdf",
    chunk_size=256,
    chunk_overlap=32,
    version=2,
)
INGESTED = chunk_payload(document_payload(DOCUMENT), version=2, position=4, page=3, section="Refunds")


def test_a_chunk_carries_its_document_fields_and_where_it_sits():
    assert INGESTED == {
        "tenant_id": "t1",
        "document_id": "doc_1",
        "kb_id": "handbook",
        "title": "Returns",
        "filename": "returns.pdf",
        "content_type": "application/pdf",
        "external_id": "ext-9",
        "source": "api",
        "metadata": DOCUMENT.metadata,
        "user_id": "u7",
        "tag_ids": ["t-1", "t-2"],
        "tag_names": ["policy"],
        "type_name": "guide",
        "category_name": "support",
        "page": 3,
        "section": "Refunds",
        "chunk_index": 4,
        "version": 2,
    }


def documented_filter_fields() -> set[str]:
    text = " ".join(README.read_text().split())
    listed = re.search(r"Filters: .*? on `(?P<fields>[^`]+)` and `metadata\.<key>`", text)
    assert listed is not None, "README.md no longer lists the filter fields"
    return set(listed["fields"].split())


def test_the_documented_filter_fields_are_the_filterable_ones():
    """README's list plus tenant_id, which the server always sets itself."""
    assert documented_filter_fields() | {"tenant_id"} == KEYWORD_FIELDS | NUMERIC_FIELDS


def test_every_documented_field_of_an_ingested_chunk_is_filterable():
    values = filterable_values(INGESTED)
    assert documented_filter_fields() <= set(values)
    assert values["page"] == [3] and values["tag_ids"] == ["t-1", "t-2"] and values["metadata.team"] == ["eng"]


BIG = 10**400  # a JSON integer no double holds
FILTERABLE_TABLE: list[tuple[dict[str, Any], dict[str, list[Any]]]] = [
    ({}, {}),
    ({"source": "web", "section": "not a filter field", "chunk_index": 3}, {"source": ["web"]}),
    ({"tag_ids": ["a", {"x": 1}, None, "b"], "title": {"not": "a scalar"}, "page": None}, {"tag_ids": ["a", "b"]}),
    ({"tag_names": [], "filename": [{"x": 1}]}, {}),
    ({"page": True, "kb_id": 0}, {"kb_id": [0], "page": [True]}),  # fields sorted, kinds kept
    (
        {"metadata": {"team": "eng", "deep": {"k": "v", "empty": {}}}},
        {"metadata.team": ["eng"], "metadata.deep.k": ["v"]},
    ),
    ({"metadata": {"a.b": 1, "$op": 2, "": 3, "n": {"": 4, "$x": 5}}}, {}),  # no filter path names these
    ({"metadata": {"a\x1fb": "v"}}, {"metadata.a\x1fb": ["v"]}),  # control characters are just characters
    ({"metadata": {"big": BIG, "list": [1, [2], "x"]}}, {"metadata.big": [BIG], "metadata.list": [1, "x"]}),
    ({"metadata": ["not", "an", "object"]}, {}),
]


@pytest.mark.parametrize(("payload", "expected"), FILTERABLE_TABLE)
def test_filterable_values(payload, expected):
    values = filterable_values(payload)
    assert values == expected
    assert list(values) == list(expected)  # the order OpenSearch's filter_fields are written in


def test_nan_is_a_value_that_exists():
    assert [math.isnan(v) for v in filterable_values({"metadata": {"n": math.nan}})["metadata.n"]] == [True]


# (payloads, filter, which payloads match). The cases where the engines' copies of the filterable
# values used to differ come first: OpenSearch dropped metadata keys holding its token separator
# (and one such key could alias another path), the embedded engine failed on integers beyond a
# double, and the reference compared integers beyond 2**53 exactly where both engines use doubles.
SEPARATOR_KEY = {"metadata": {"a\x1fs:x": "y"}}
SEPARATOR_VALUE = {"metadata": {"a": "x\x1fs:y"}}
AGREEMENT: list[tuple[list[dict[str, Any]], dict[str, Any], list[bool]]] = [
    ([{"metadata": {"a\x1fb": "v"}}], {"metadata.a\x1fb": "v"}, [True]),
    ([SEPARATOR_KEY, SEPARATOR_VALUE], {"metadata.a": "x\x1fs:y"}, [False, True]),
    ([SEPARATOR_KEY, SEPARATOR_VALUE], {"metadata.a\x1fs:x": "y"}, [True, False]),
    ([SEPARATOR_KEY, SEPARATOR_VALUE], {"metadata.a": {"$gte": "x"}}, [False, True]),
    ([{"metadata": {"big": BIG}}, {"metadata": {"big": 5}}], {"metadata.big": {"$gt": 10**300}}, [True, False]),
    ([{"metadata": {"big": BIG}}, {"metadata": {"big": -BIG}}], {"metadata.big": BIG}, [True, False]),
    ([{"metadata": {"n": 2**53}}], {"metadata.n": 2**53 + 1}, [True]),  # as doubles they are one number
    ([{"metadata": {"n": 2**53}}], {"metadata.n": {"$gt": 2**53}}, [False]),
    ([{"metadata": {"a.b": "x", "c": {"d": "y"}}}], {"metadata.a.b": "x"}, [False]),
    ([{"metadata": {"a.b": "x", "c": {"d": "y"}}}], {"metadata.c.d": "y"}, [True]),
    ([{"metadata": {"n": math.nan}}], {"metadata.n": {"$exists": True}}, [True]),
    ([{"metadata": {"n": math.nan}}], {"metadata.n": {"$gte": 0}}, [False]),
    *[([INGESTED], {name: INGESTED[name]}, [True]) for name in sorted(KEYWORD_FIELDS - {"tenant_id"})],
    ([INGESTED], {"page": {"$gt": 2, "$lt": 4}}, [True]),
    ([INGESTED], {"metadata.team": {"$in": ["eng", "ops"]}}, [True]),
]


@pytest.mark.parametrize(("payloads", "spec", "expected"), AGREEMENT)
def test_reference_semantics_of_the_agreement_table(payloads, spec, expected):
    assert [matches(parse_filter(spec), payload) for payload in payloads] == expected
