"""Per-tenant layout: how a tenant id becomes an index name, and the settings that choose it.

The name is how a tenant finds its chunks, so it must be valid for OpenSearch, distinct for
distinct ids (case, unicode, forbidden characters, long ids) and never change between releases
(pinned by a golden file).
"""

from __future__ import annotations

import random
import re

import pytest

from ragline.adapters.aws.opensearch import queries as q
from ragline.adapters.aws.opensearch.index import OpenSearchVectorIndex
from ragline.adapters.aws.opensearch.settings import OpenSearchConfigError, OpenSearchSettings
from ragline.config import Settings
from tests.unit.test_opensearch_queries import assert_golden

ALIAS = "ragline-chunks"
FORBIDDEN = set('\\/*?"<>| ,#:')


def assert_valid_index_name(name: str) -> None:
    """OpenSearch's rules for index (and alias) names, written out independently of the code."""
    assert name == name.lower(), f"{name!r} has upper case"
    assert not (FORBIDDEN & set(name)), f"{name!r} has a forbidden character"
    assert not any(ch.isspace() or ord(ch) < 0x20 for ch in name), f"{name!r} has whitespace or a control character"
    assert name[0] not in "-_+", f"{name!r} starts with - _ or +"
    assert name not in (".", "..")
    assert len(name.encode("utf-8")) <= 255, f"{name!r} is longer than 255 bytes"


# (tenant id, what the row is about)
TENANTS: list[tuple[str, str]] = [
    ("acme", "plain"),
    ("Acme", "case collision with acme"),
    ("ACME", "case collision with acme"),
    ("acme.corp", "dot"),
    ("acme_corp", "underscore, same slug as acme.corp"),
    ("acme-corp", "dash, same slug as acme.corp"),
    ("acme corp", "space"),
    ("acme--corp", "double dash"),
    ("Müller GmbH", "accented latin"),
    ("muller-gmbh", "same slug as Müller GmbH"),
    ("Mu\u0308ller GmbH", "decomposed ü: another id than the precomposed one"),
    ("租户", "no latin letter at all"),
    ("テナント", "no latin letter at all, another script"),
    ("🙂", "emoji"),
    ("a/b", "slash"),
    ("a\\b", "backslash"),
    ('*?"<>|,#:', "only forbidden characters"),
    ("-leading", "leading dash"),
    ("_leading", "leading underscore"),
    ("+leading", "leading plus"),
    (".", "dot alone"),
    ("..", "two dots"),
    ("0", "a digit"),
    ("x" * 64, "longest API tenant id"),
    ("x" * 63 + "y", "differs in the last of 64 characters"),
    ("x" * 500, "far longer than a name may be"),
    ("x" * 500 + "z", "differs after the slug's 48 characters"),
    ("\x00\x1f", "control characters"),
    ("t1", "the tests' tenant"),
]


@pytest.mark.parametrize("tenant, why", TENANTS, ids=[why for _, why in TENANTS])
def test_every_tenant_gets_a_valid_name_with_room_for_versions(tenant, why):
    name = q.tenant_alias(ALIAS, tenant)
    assert_valid_index_name(name)
    assert name.startswith(f"{ALIAS}-t-")
    assert re.fullmatch(r"[a-z0-9-]+", name)
    assert_valid_index_name(q.versioned_index_name(name, 9_999_999_999))  # every index version fits too
    assert q.tenant_alias(ALIAS, tenant) == name  # deterministic


def test_distinct_tenants_get_distinct_names():
    names = {tenant: q.tenant_alias(ALIAS, tenant) for tenant, _ in TENANTS}
    assert len(set(names.values())) == len(names)


def test_names_are_readable():
    assert re.fullmatch(r"ragline-chunks-t-acme-[0-9a-f]{12}", q.tenant_alias(ALIAS, "acme"))
    assert re.fullmatch(r"ragline-chunks-t-acme-[0-9a-f]{12}", q.tenant_alias(ALIAS, "Acme"))
    assert re.fullmatch(r"ragline-chunks-t-muller-gmbh-[0-9a-f]{12}", q.tenant_alias(ALIAS, "Müller GmbH"))
    assert re.fullmatch(r"ragline-chunks-t-[0-9a-f]{12}", q.tenant_alias(ALIAS, "租户"))
    assert len(q.tenant_slug("x" * 500)) == q.TENANT_SLUG_MAX_CHARS


def test_random_unicode_ids_get_valid_distinct_names():
    rng = random.Random(7)
    alphabet = 'aAzZ09 ._-/\\*?"<>|,#:+üÜßøé租户🙂\u0301\x00\t'
    ids = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(3000)}
    names = {q.tenant_alias(ALIAS, tenant) for tenant in ids}
    assert len(names) == len(ids)
    for name in names:
        assert_valid_index_name(name)


def test_the_longest_alias_still_makes_valid_names():
    alias = "a" * q.MAX_TENANT_ALIAS_PREFIX
    name = q.versioned_index_name(q.tenant_alias(alias, "x" * 500), 9_999_999_999)
    assert_valid_index_name(name)
    with pytest.raises(ValueError, match="at most"):
        q.tenant_alias(alias + "a", "acme")
    with pytest.raises(ValueError, match="tenant id"):
        q.tenant_alias(ALIAS, "")


def test_tenant_indices_are_never_taken_for_versions_of_the_shared_alias():
    name = q.tenant_alias(ALIAS, "v2")
    assert q.index_version(ALIAS, name) is None
    assert q.index_version(ALIAS, q.versioned_index_name(name, 1)) is None
    assert q.index_version(name, q.versioned_index_name(name, 3)) == 3


def test_tenant_names_golden():
    """Pinned: a changed mapping would hide every tenant's chunks (their indices keep the old names)."""
    assert_golden("tenant_aliases.json", {tenant: q.tenant_alias(ALIAS, tenant) for tenant, _ in TENANTS[:24]})


def per_tenant_settings(**options) -> OpenSearchSettings:
    return OpenSearchSettings(url="http://localhost:9200", index_layout="per_tenant", **options)


def test_per_tenant_index_definition_golden():
    """Same settings and mappings as the shared index, plus the tenant in _meta and no _routing."""
    adapter = OpenSearchVectorIndex(per_tenant_settings(), 8)
    body = adapter.index_definition(tenant_id="Acme")
    assert_golden("index_definition_per_tenant.json", body)
    shared = OpenSearchVectorIndex(OpenSearchSettings(url="http://localhost:9200"), 8).index_definition()
    assert body["settings"] == shared["settings"]
    assert body["mappings"]["properties"] == shared["mappings"]["properties"]
    assert body["mappings"]["_meta"] == {"ragline_tenant_id": "Acme"}
    assert "_routing" not in body["mappings"]
    assert body["aliases"] == {q.tenant_alias(ALIAS, "Acme"): {"is_write_index": True}}


def test_alias_add_golden():
    alias = q.tenant_alias(ALIAS, "acme")
    assert_golden("alias_add.json", q.alias_swap(alias, None, f"{alias}-v1"))


def test_index_tenant_and_alias_targets():
    mapping = {"x-v1": {"mappings": {"_meta": {"ragline_tenant_id": "Acme"}, "properties": {}}}}
    assert q.index_tenant(mapping) == "Acme"
    assert q.index_tenant({"x-v1": {"mappings": {"properties": {}}}}) is None
    answer = {
        "a-v1": {"aliases": {"a": {}}},
        "b-v1": {"aliases": {"b": {}}},
        "b-v2": {"aliases": {"b": {"is_write_index": True}}},
    }
    assert q.alias_targets(answer) == {"a": "a-v1", "b": "b-v2"}


def test_primaries_stats_sum_only_the_named_indices():
    def entry(count: int, deleted: int, size: int) -> dict:
        return {"primaries": {"docs": {"count": count, "deleted": deleted}, "store": {"size_in_bytes": size}}}

    answer = {"indices": {"a-v1": entry(3, 1, 100), "b-v1": entry(50, 0, 900), "b-v2": entry(5, 2, 300)}}
    assert q.primaries_stats(answer, ["a-v1", "b-v2"]) == {"chunks": 8, "deleted_chunks": 3, "store_bytes": 400}


# ---- settings ---------------------------------------------------------------------------------------
def test_layout_settings_are_read_once_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENSEARCH_URL", "https://search.example:443")
    monkeypatch.setenv("RAGLINE_OPENSEARCH_INDEX_LAYOUT", "per_tenant")
    monkeypatch.setenv("RAGLINE_OPENSEARCH_MAX_TENANT_INDICES", "25")
    view = OpenSearchSettings.from_settings(Settings())
    assert (view.index_layout, view.per_tenant, view.max_tenant_indices) == ("per_tenant", True, 25)
    monkeypatch.delenv("RAGLINE_OPENSEARCH_INDEX_LAYOUT")
    monkeypatch.delenv("RAGLINE_OPENSEARCH_MAX_TENANT_INDICES")
    view = OpenSearchSettings.from_settings(Settings())
    assert (view.index_layout, view.max_tenant_indices) == ("shared", 100)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RAGLINE_OPENSEARCH_INDEX_LAYOUT": "per-tenant"}, "shared"),
        ({"RAGLINE_OPENSEARCH_MAX_TENANT_INDICES": "0"}, "greater than or equal to 1"),
    ],
)
def test_bad_layout_settings_fail_at_start(env, message, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        Settings()


def test_per_tenant_refuses_serverless_and_too_long_aliases():
    with pytest.raises(ValueError, match="not Serverless"):
        per_tenant_settings(auth_mode="sigv4-aoss", region="eu-west-1")
    with pytest.raises(ValueError, match="at most 150"):
        per_tenant_settings(index_alias="a" * 151)
    OpenSearchSettings(url="http://localhost:9200", index_alias="a" * 151)  # the shared layout has no suffix


def test_index_version_operations_need_a_tenant_in_the_per_tenant_layout():
    adapter = OpenSearchVectorIndex(per_tenant_settings(), 8)
    with pytest.raises(OpenSearchConfigError, match="name the tenant"):
        adapter.scope_alias(None)
    assert adapter.scope_alias("acme") == adapter.alias_for("acme") == q.tenant_alias(ALIAS, "acme")
    shared = OpenSearchVectorIndex(OpenSearchSettings(url="http://localhost:9200"), 8)
    assert shared.scope_alias("acme") == shared.alias_for("acme") == ALIAS
