"""Fuzz every operation of the served OpenAPI against a real server: whatever the input, never a 5xx,
never a status the OpenAPI does not list for that route, and every answer matching its schema (SSE
events of the stream included).

Schemathesis generates valid and invalid bodies, paths, queries and headers from the schema; each
operation gets up to FUZZ_EXAMPLES cases (about 1,000 in all), derandomized so a red run reproduces.
The schema is the app's own (built in-process, as `GET /openapi.json` serves it); the requests go to
a real `ragline serve` on 127.0.0.1.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from ragline.api.app import create_app
from ragline.config import Settings
from ragline.container import Container
from tests.support import Server, ragline

FUZZ_EXAMPLES = int(os.environ.get("RAGLINE_FUZZ_EXAMPLES", "90"))
MIN_CASES = 1000
CASES_SENT: dict[str, int] = {}


def _served_schema() -> dict:
    with tempfile.TemporaryDirectory() as data_dir:
        return create_app(Container(Settings(data_dir=Path(data_dir)))).openapi()


schema = schemathesis.openapi.from_dict(_served_schema())


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("fuzz-server")
    key = ragline("keys", "create", "--tenant", "fuzz", "--data-dir", str(data_dir)).strip()
    # ~1,000 cases with one key in a few minutes: a limit far above them, so a 429 never hides a 5xx.
    env = {"RAGLINE_MAX_UPLOAD_BYTES": "200000", "RAGLINE_RATE_LIMIT_PER_MINUTE": "1000000"}
    server = Server(data_dir, env=env).start()
    server.key = key
    yield server
    server.stop()


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_no_input_makes_a_server_error(case, fuzz_server):
    headers = {"x-api-key": fuzz_server.key} if case.path != "/health" else {}
    CASES_SENT[case.operation.label] = CASES_SENT.get(case.operation.label, 0) + 1
    case.call_and_validate(
        base_url=fuzz_server.url,
        headers=headers,
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
        timeout=30,
    )


def test_the_fuzz_run_sent_enough_cases():
    """Runs after the fuzz test (file order): a schema change that starves the generator shows here."""
    if len(CASES_SENT) < len(list(schema.get_all_operations())):
        pytest.skip("the fuzz test did not run for every operation in this session")
    assert sum(CASES_SENT.values()) >= MIN_CASES, CASES_SENT
