"""The drop folder ingests only what is really inside ``<inbox>/<tenant>/``: symlinks (to files outside
the inbox, or into another tenant's folder) and S3 keys with '..' segments are ignored, with a log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragline.inbox import InboxSync
from ragline.ingest.dropfolder import drop_target
from tests.integration.local_world import World, open_world

SECRET = b"The root password of this machine is hunter2, and nobody should read it."


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    opened = open_world(tmp_path / "data")
    yield opened
    opened.close()


def _documents(world: World, tenant: str) -> list:
    return world.store.documents_from_source("inbox") and [
        doc for doc in world.store.documents_from_source("inbox") if doc.tenant_id == tenant
    ]


@pytest.fixture
def inbox(world: World, tmp_path: Path) -> tuple[Path, InboxSync]:
    root = tmp_path / "inbox"
    (root / "acme").mkdir(parents=True)
    (root / "globex").mkdir(parents=True)
    return root, InboxSync(root, world.ingest, world.store, lambda: None)


def test_a_symlink_to_a_file_outside_the_inbox_is_ignored(world, inbox, tmp_path, caplog):
    root, sync = inbox
    outside = tmp_path / "secret.txt"
    outside.write_bytes(SECRET)
    (root / "acme" / "leak.txt").symlink_to(outside)
    with caplog.at_level(logging.WARNING):
        sync.reconcile()
    assert _documents(world, "acme") == []
    assert "symlink or a path outside its tenant's folder" in caplog.text


def test_a_symlink_into_another_tenants_folder_is_ignored(world, inbox):
    root, sync = inbox
    (root / "globex" / "plans.txt").write_bytes(SECRET)
    (root / "acme" / "stolen.txt").symlink_to(root / "globex" / "plans.txt")
    (root / "acme" / "folder").symlink_to(root / "globex", target_is_directory=True)
    sync.reconcile()
    assert [doc.external_id for doc in _documents(world, "globex")] == ["inbox:globex/plans.txt"]
    assert _documents(world, "acme") == []


def test_a_symlinked_tenant_folder_is_ignored(world, inbox, tmp_path):
    root, sync = inbox
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.txt").write_bytes(SECRET)
    (root / "initech").symlink_to(elsewhere, target_is_directory=True)
    sync.sync(root / "initech" / "a.txt")
    assert _documents(world, "initech") == []


def test_real_files_are_still_ingested(world, inbox):
    root, sync = inbox
    (root / "acme" / "real.txt").write_bytes(b"Real text in the right folder, about sea otters.")
    sync.reconcile()
    assert [doc.external_id for doc in _documents(world, "acme")] == ["inbox:acme/real.txt"]


@pytest.mark.parametrize(
    "key", ["acme/../globex/x.txt", "acme/./x.txt", "../acme/x.txt", "acme//x.txt", "acme/a/../../globex/x.txt"]
)
def test_s3_keys_with_dot_segments_are_ignored(key):
    assert drop_target(key) is None


def test_ordinary_keys_name_their_tenant():
    assert drop_target("acme/reports/2026/q1.pdf") == "acme"
