"""SnapStart's runtime hooks, as Lambda's managed runtime would call them (template parameter
SnapStart=PublishedVersions): registered at init, priming before the snapshot, and after a restore
no connection from init reused. `snapshot_restore_py` only exists in Lambda's runtime: a stand-in
records the registrations here."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from ragline.adapters.aws import clients
from ragline.adapters.aws.opensearch.client import opensearch_client
from ragline.adapters.aws.opensearch.index import OpenSearchVectorIndex
from ragline.adapters.aws.opensearch.settings import OpenSearchSettings
from ragline.container import get_container
from ragline_emulator.event_sources import EmulatedLambdaContext
from tests.functions.conftest import Stack, load_function, response_json, rest_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


class RuntimeHooks:
    """Records what a function registers, in order, like snapshot_restore_py does."""

    def __init__(self) -> None:
        self.before: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.after: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def module(self) -> types.ModuleType:
        module = types.ModuleType("snapshot_restore_py")
        module.register_before_snapshot = lambda func, *args: self.before.append((func, args))  # type: ignore[attr-defined]
        module.register_after_restore = lambda func, *args: self.after.append((func, args))  # type: ignore[attr-defined]
        return module

    def snapshot(self) -> None:
        for func, args in reversed(self.before):  # Lambda runs them in reverse order of registration
            func(*args)

    def restore(self) -> None:
        for func, args in self.after:
            func(*args)


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> RuntimeHooks:
    recorder = RuntimeHooks()
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", recorder.module())
    return recorder


class Connections:
    def __init__(self) -> None:
        self.dropped = 0

    def drop_connections(self) -> None:
        self.dropped += 1


def test_search_registers_priming_and_restore_and_still_answers(
    stack: Stack, hooks: RuntimeHooks, context: EmulatedLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    search = load_function("search")
    assert len(hooks.before) == 1 and len(hooks.after) == 1
    embedded: list[str] = []
    embed_query = search.container.embedder.embed_query
    monkeypatch.setattr(
        search.container.embedder, "embed_query", lambda text: embedded.append(text) or embed_query(text)
    )
    hooks.snapshot()
    assert embedded == ["snapshot priming"]  # the first inference is paid before the snapshot

    closed: list[bool] = []
    monkeypatch.setattr(clients, "close_connections", lambda: closed.append(True))
    answerer = Connections()
    search.container.__dict__["answerer"] = answerer  # as if init had built a Claude adapter
    hooks.restore()
    assert closed == [True] and answerer.dropped == 1

    answer = search.handler(
        rest_event("POST", "/v1/kb/search", key=stack.keys["t1"], body={"query": "refunds"}), context
    )
    assert answer["statusCode"] == 200, answer
    assert "items" in response_json(answer)


def test_documents_has_no_model_to_prime(stack: Stack, hooks: RuntimeHooks) -> None:
    documents = load_function("documents")
    hooks.snapshot()
    assert "embedder" not in vars(documents.container)  # priming must not load what init did not


def test_outside_lambdas_runtime_nothing_is_registered(stack: Stack) -> None:
    assert "snapshot_restore_py" not in sys.modules
    get_container.cache_clear()
    load_function("chat")  # imports without the runtime's module


@pytest.fixture
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_close_connections_empties_every_clients_pool_and_they_still_work(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    clients.reset_clients()
    try:
        sqs = clients.client("sqs", endpoint_url=moto_server)
        sns = clients.client("sns", endpoint_url=moto_server)
        sqs.create_queue(QueueName="restored")
        sns.create_topic(Name="restored")
        pools = [c._endpoint.http_session._manager.pools for c in (sqs, sns)]  # urllib3's, inside botocore
        assert all(len(p) == 1 for p in pools)
        clients.close_connections()
        assert all(len(p) == 0 for p in pools)
        assert sqs.list_queues()["QueueUrls"][0].endswith("/restored")  # a new connection, same client
        assert clients.client("sqs", endpoint_url=moto_server) is sqs
    finally:
        clients.reset_clients()


def test_opensearch_index_drops_only_a_client_it_built() -> None:
    settings = OpenSearchSettings(url="http://127.0.0.1:9", auth_mode="none")
    owned = OpenSearchVectorIndex(settings, 384)
    built = owned.client  # no request is made
    owned.drop_connections()
    assert owned._client is None and opensearch_client.cache_info().currsize == 0
    assert owned.client is not built  # rebuilt on the next call

    given = OpenSearchVectorIndex(settings, 384, client=built)
    given.drop_connections()
    assert given.client is built
