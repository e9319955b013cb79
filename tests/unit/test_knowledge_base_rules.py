"""Knowledge-base rules that need no store: names, the search exclusion and how OpenSearch gets it."""

from __future__ import annotations

from ragline.adapters.aws.opensearch.queries import filter_token, to_dsl
from ragline.knowledge_bases import hidden_from_search, name_key
from ragline.retrieval.filters import And, Not, Term, matches, scope_to_tenant, tenant_of


class Deleting:
    def __init__(self, ids: set[str]) -> None:
        self.ids = ids

    def deleting_kb_ids(self, tenant_id: str) -> set[str]:
        return self.ids if tenant_id == "t1" else set()


def test_names_compare_without_case_or_surrounding_spaces() -> None:
    assert name_key("  Support Manuals ") == name_key("support manuals") != name_key("support  manuals")


def test_the_exclusion_names_the_kbs_being_deleted_and_nothing_else() -> None:
    assert hidden_from_search(Deleting(set()), "t1") is None  # nothing added to an ordinary search
    clause = hidden_from_search(Deleting({"kb_b", "kb_a"}), "t1")
    assert clause == Not(Term("kb_id", ("kb_a", "kb_b")))
    assert hidden_from_search(Deleting({"kb_a"}), "t2") is None  # per tenant
    flt = And((scope_to_tenant({"kb_id": {"$in": ["kb_a", "kb_c"]}}, "t1"), clause))
    assert tenant_of(flt) == "t1"  # the tenant clause stays first, as the engines expect
    assert not matches(flt, {"tenant_id": "t1", "kb_id": "kb_a"})
    assert matches(flt, {"tenant_id": "t1", "kb_id": "kb_c"})


def test_opensearch_applies_the_exclusion_inside_the_query() -> None:
    clause = hidden_from_search(Deleting({"kb_a", "kb_b"}), "t1")
    assert clause is not None
    tokens = [filter_token("kb_id", "kb_a"), filter_token("kb_id", "kb_b")]
    assert to_dsl(clause) == {"bool": {"must_not": [{"terms": {"filter_terms": tokens}}]}}
