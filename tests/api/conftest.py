from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ragline.adapters.local.sqlite_store import SqliteMetadataStore
from ragline.keys import hash_key
from ragline.models import ALL_SCOPES, ApiKey
from tests.support import Server, ragline

UPLOAD_LIMIT = 2_000_000


@pytest.fixture(scope="session")
def api(tmp_path_factory):
    """One real server for the API tests, with keys for two tenants and some odd keys."""
    data_dir = tmp_path_factory.mktemp("api-server")
    keys = {
        "t1": ragline("keys", "create", "--tenant", "t1", "--data-dir", str(data_dir)).strip(),
        "t2": ragline("keys", "create", "--tenant", "t2", "--data-dir", str(data_dir)).strip(),
        # a tenant for tests that delete all of a tenant's documents
        "t3": ragline("keys", "create", "--tenant", "t3", "--data-dir", str(data_dir)).strip(),
        "t1_search": ragline(
            "keys", "create", "--tenant", "t1", "--scopes", "search", "--data-dir", str(data_dir)
        ).strip(),
    }
    store = SqliteMetadataStore(data_dir / "metadata.db")
    keys["expired"] = "rl_expired-key-for-tests"
    store.create_key(
        ApiKey(
            id="key_expired",
            tenant_id="t1",
            key_hash=hash_key(keys["expired"]),
            prefix="rl_exp",
            scopes=ALL_SCOPES,
            expires_at=(datetime.now(UTC) - timedelta(days=1)).isoformat(),
        )
    )
    keys["revoked"] = "rl_revoked-key-for-tests"
    store.create_key(
        ApiKey(
            id="key_revoked",
            tenant_id="t1",
            key_hash=hash_key(keys["revoked"]),
            prefix="rl_rev",
            scopes=ALL_SCOPES,
            revoked_at=datetime.now(UTC).isoformat(),
        )
    )
    server = Server(data_dir, env={"RAGLINE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}).start()
    server.keys = keys
    yield server
    server.stop()


@pytest.fixture
def client(api):
    with httpx.Client(base_url=api.url, headers={"x-api-key": api.keys["t1"]}, timeout=60) as c:
        yield c


@pytest.fixture
def wiped(api):
    with httpx.Client(base_url=api.url, headers={"x-api-key": api.keys["t3"]}, timeout=60) as c:
        yield c


@pytest.fixture
def other(api):
    with httpx.Client(base_url=api.url, headers={"x-api-key": api.keys["t2"]}, timeout=60) as c:
        yield c
