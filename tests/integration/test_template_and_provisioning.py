"""template.yaml is the contract: its shape, and creating its resources on moto (in-process and server)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from ragline.adapters.aws import clients
from ragline.adapters.aws.dynamodb.table import TTL_ATTRIBUTE, table_definitions, time_to_live
from ragline_emulator.provision import (
    ProvisionedResources,
    Resolver,
    TemplateError,
    _Created,
    default_template_path,
    deployable_subset,
    load_template,
    provision,
    references,
    settings_overrides,
)
from tests.support import REPO

TEMPLATE = load_template(REPO / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = {name: spec for name, spec in RESOURCES.items() if spec["Type"] == "AWS::Serverless::Function"}
OPEN_ROUTES = {("/health", "GET")}


def props(name: str) -> dict[str, Any]:
    return RESOURCES[name]["Properties"]


def api_events() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(function, path, method, event properties) for every API route."""
    return [
        (function, event["Properties"]["Path"], event["Properties"]["Method"].upper(), event["Properties"])
        for function, spec in FUNCTIONS.items()
        for event in spec["Properties"].get("Events", {}).values()
        if event["Type"] == "Api"
    ]


# ---- the template ----------------------------------------------------------------------------------
def test_template_loads_with_short_tags_in_long_form():
    assert TEMPLATE["Transform"] == "AWS::Serverless-2016-10-31"
    assert props("IngestQueue")["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]
    }
    assert props("MetadataTable")  # parsed, not a tag object
    assert set(FUNCTIONS) == {
        "IngestFunction",
        "SearchFunction",
        "ChatFunction",
        "DocumentsFunction",
        "StreamChatFunction",
        "ChatWsFunction",
        "AuthorizerFunction",
        "EventsRedeliveryFunction",
        "WebhooksFunction",
        "WebhookDispatcherFunction",
        "KeysFunction",
        "InsightFunction",
    }


def test_a_missing_template_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGLINE_TEMPLATE", str(tmp_path / "nope.yaml"))
    with pytest.raises(TemplateError, match="RAGLINE_TEMPLATE"):
        load_template()


def test_every_function_code_dir_exists():
    for name, spec in FUNCTIONS.items():
        code_dir = REPO / spec["Properties"]["CodeUri"]
        if not code_dir.is_dir():
            # Another engineer writes functions/<name>/app.py; keep the directory so SAM can resolve it.
            code_dir.mkdir(parents=True)
            (code_dir / ".gitkeep").touch()
        assert code_dir.is_dir(), name


# Functions that embed (or build container.ingest, which builds the embedder) get the EmbeddingLayer too.
EMBEDDING_FUNCTIONS = {
    "IngestFunction",
    "SearchFunction",
    "ChatFunction",
    "StreamChatFunction",
    "ChatWsFunction",
    "DocumentsFunction",
}
LAYERS = {"CoreLayer": "core", "EmbeddingLayer": "embedding"}  # logical id -> infra/layers/<folder>


def test_every_function_runs_python312_with_the_core_layer_and_the_globals():
    globals_function = TEMPLATE["Globals"]["Function"]
    assert globals_function["Layers"] == [{"Ref": "CoreLayer"}]
    # python3.11 runs on Amazon Linux 2 (glibc 2.26): no loadable wheel of the pinned numpy/onnxruntime.
    assert globals_function["Runtime"] == "python3.12" and globals_function["Architectures"] == ["x86_64"]
    assert globals_function["Tracing"] == "Active"
    env = globals_function["Environment"]["Variables"]
    for name in (
        "RAGLINE_BACKEND",
        "RAGLINE_DOCUMENTS_BUCKET",
        "RAGLINE_INGEST_QUEUE_URL",
        "RAGLINE_EVENTS_TOPIC_ARN",
        "RAGLINE_TABLE_NAME",
        "OPENSEARCH_URL",
        "RAGLINE_AUTH_MODE",
        "RAGLINE_EMBEDDING_PROVIDER",
        "RAGLINE_INGEST_RECLAIM_AFTER_SECONDS",
        "RAGLINE_INGEST_MAX_RECEIVES",
        "RAGLINE_DATA_DIR",
        "POWERTOOLS_METRICS_NAMESPACE",
    ):
        assert name in env, name
    for name, spec in FUNCTIONS.items():
        properties = spec["Properties"]
        assert properties.get("Runtime", "python3.12") == "python3.12", name
        own_layers = properties.get("Layers", [])
        # A function-level Layers list is appended to the global one: never repeat the core layer there.
        assert {"Ref": "CoreLayer"} not in own_layers, name
        assert ({"Ref": "EmbeddingLayer"} in own_layers) == (name in EMBEDDING_FUNCTIONS), name
        assert "POWERTOOLS_SERVICE_NAME" in properties["Environment"]["Variables"], name


def test_the_layers_are_built_by_their_makefiles_for_python312():
    layers = {name for name, spec in RESOURCES.items() if spec["Type"] == "AWS::Serverless::LayerVersion"}
    assert layers == set(LAYERS)
    pip_install = (REPO / "infra" / "layers" / "layer.mk").read_text()
    for flag in (
        "--no-deps",
        "--only-binary=:all:",
        "--platform manylinux2014_x86_64",
        "--platform manylinux_2_28_x86_64",
        "--python-version 3.12",
        "--implementation cp",
    ):
        assert flag in pip_install, flag
    for name, folder in LAYERS.items():
        assert RESOURCES[name]["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "x86_64"}
        assert props(name)["CompatibleRuntimes"] == ["python3.12"]
        assert props(name)["CompatibleArchitectures"] == ["x86_64"]
        content = (REPO / props(name)["ContentUri"]).resolve()
        assert content == (REPO / "infra" / "layers" / folder).resolve(), name
        # SAM runs `make build-<LogicalId>` with the Makefile found in ContentUri.
        assert f"build-{name}:" in (content / "Makefile").read_text(), name
        assert (content / "requirements.txt").is_file(), name


def test_metadata_table_equals_the_store_definition():
    expected = table_definitions()[0]
    table = props("MetadataTable")
    for key in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "BillingMode"):
        assert table[key] == expected[key], key
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_every_route_but_health_needs_the_key_and_the_authorizer():
    auth = props("RagApi")["Auth"]
    assert auth["ApiKeyRequired"] is True
    assert auth["DefaultAuthorizer"] in auth["Authorizers"]
    authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]
    assert authorizer["FunctionPayloadType"] == "REQUEST"
    assert authorizer["Identity"]["Headers"] == ["x-api-key"]
    assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    assert auth["UsagePlan"]["CreateUsagePlan"] == "PER_API"
    routes = api_events()
    assert {(path, method) for _, path, method, _ in routes} >= {
        ("/v1/kb/search", "POST"),
        ("/v1/kb/chat", "POST"),
        ("/v1/kb/chat/stream", "POST"),
        ("/v1/kb/documents", "POST"),
        ("/v1/kb/documents", "GET"),
        ("/v1/kb/documents/{id}", "GET"),
        ("/v1/kb/documents/{id}", "DELETE"),
        ("/v1/kb/delete", "POST"),
        ("/v1/kb/uploads", "POST"),
        ("/v1/kb/jobs/{job_id}", "GET"),
        ("/health", "GET"),
        ("/health/detailed", "GET"),
        ("/v1/keys", "POST"),
        ("/v1/keys", "GET"),
        ("/v1/keys/{key_id}", "GET"),
        ("/v1/keys/{key_id}", "DELETE"),
        ("/v1/keys/{key_id}/rotate", "POST"),
        ("/v1/keys/{key_id}/usage", "GET"),
        ("/v1/audit", "GET"),
        ("/v1/queries/history", "GET"),
        ("/v1/queries/{query_id}", "GET"),
        ("/v1/queries/{query_id}", "DELETE"),
        ("/v1/queries/{query_id}/rating", "PATCH"),
        ("/v1/analytics/popular", "GET"),
        ("/v1/analytics/usage", "GET"),
        ("/v1/documents/{document_id}/stats", "GET"),
        ("/v1/kb/documents/{id}/stats", "GET"),
    }
    # A revoked or rotated-out key is refused within a minute: the authorizer's cached answer lives at most this.
    assert 0 < authorizer["Identity"]["ReauthorizeEvery"] <= 60
    for function, path, method, event in routes:
        assert event["RestApiId"] == {"Ref": "RagApi"}, (function, path)
        route_auth = event.get("Auth", {})
        if (path, method) in OPEN_ROUTES:
            assert route_auth == {"ApiKeyRequired": False, "Authorizer": "NONE"}
        else:
            # Nothing may switch the API-wide key requirement or default authorizer off.
            assert route_auth.get("ApiKeyRequired", True) is True, (path, method)
            assert route_auth.get("Authorizer", auth["DefaultAuthorizer"]) == auth["DefaultAuthorizer"], (path, method)


def test_the_stream_route_streams_through_the_web_adapter():
    stream = props("StreamChatFunction")
    (event,) = [e for f, _, _, e in api_events() if f == "StreamChatFunction"]
    assert event["ResponseTransferMode"] == "RESPONSE_STREAM"
    assert stream["Handler"] == "run.sh"
    env = stream["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap" and env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    (adapter,) = [layer for layer in stream["Layers"] if "Fn::Sub" in layer]
    assert re.search(r":753240598075:layer:LambdaAdapterLayerX86:\d+$", adapter["Fn::Sub"])
    # The authorizer's context would reach this app only as a request header: it checks the key itself.
    assert env["RAGLINE_AUTH_MODE"] == "key"


def test_the_websocket_chat_api_routes_connect_through_the_key_authorizer_and_everything_to_its_function():
    api = props("ChatWebSocketApi")
    assert api["ProtocolType"] == "WEBSOCKET"
    routes = {
        spec["Properties"]["RouteKey"]: spec["Properties"]
        for spec in RESOURCES.values()
        if spec["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert set(routes) == {"$connect", "$disconnect", "$default"}
    integration = {"Fn::Sub": "integrations/${ChatWebSocketIntegration}"}
    for key, route in routes.items():
        assert route["ApiId"] == {"Ref": "ChatWebSocketApi"} and route["Target"] == integration, key
    # Only $connect can have an authorizer on a WebSocket API: the key authorizer, the REST API's function.
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM"
    assert routes["$connect"]["AuthorizerId"] == {"Ref": "ChatWebSocketAuthorizer"}
    authorizer = props("ChatWebSocketAuthorizer")
    assert (
        authorizer["AuthorizerType"] == "REQUEST"
        and "${AuthorizerFunction.Arn}" in authorizer["AuthorizerUri"]["Fn::Sub"]
    )
    # Browsers send no headers: an identity source would make API Gateway refuse them before the authorizer runs.
    assert "IdentitySource" not in authorizer
    assert "${ChatWsFunction.Arn}" in props("ChatWebSocketIntegration")["IntegrationUri"]["Fn::Sub"]
    assert props("ChatWebSocketIntegration")["IntegrationType"] == "AWS_PROXY"
    stage = props("ChatWebSocketStage")
    assert stage["StageName"] == {"Ref": "Stage"} and stage["AutoDeploy"] is True
    # API Gateway may invoke both functions from this API.
    permissions = {
        json.dumps(spec["Properties"]["FunctionName"]): spec["Properties"]["SourceArn"]["Fn::Sub"]
        for spec in RESOURCES.values()
        if spec["Type"] == "AWS::Lambda::Permission"
    }
    assert (
        "${ChatWebSocketApi}/authorizers/${ChatWebSocketAuthorizer}"
        in permissions[json.dumps({"Fn::GetAtt": ["AuthorizerFunction", "Arn"]})]
    )
    assert permissions[json.dumps({"Fn::GetAtt": ["ChatWsFunction", "Arn"]})].endswith("${ChatWebSocketApi}/*")
    function = props("ChatWsFunction")
    env = function["Environment"]["Variables"]
    assert env["RAGLINE_WS_CALLBACK_URL"] == {
        "Fn::Sub": "https://${ChatWebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}"
    }
    assert float(env["RAGLINE_WS_AUTH_TIMEOUT_SECONDS"]) == 5
    policies = json.dumps(function["Policies"])
    assert "execute-api:ManageConnections" in policies and "@connections/*" in policies
    assert "DynamoDBCrudPolicy" in policies  # connections, history, usage, rate-limit counters
    assert TEMPLATE["Outputs"]["ChatWebSocketUrl"]["Value"]["Fn::Sub"].startswith("wss://${ChatWebSocketApi}")


# Measured peak RSS (`ragline bench coldstart`, `ragline bench memory`) -> MemorySize; infra/README.md has the table.
# Above the peak, memory buys CPU: Lambda allots it in proportion (1,769 MB = one vCPU), and embedding is CPU-bound.
MEMORY = {
    "AuthorizerFunction": (77, 256),
    "SearchFunction": (332, 1024),
    "ChatFunction": (330, 1024),
    "StreamChatFunction": (333, 1024),
    # Init, $connect, three queries and $disconnect on moto, with the harness and an ingest in the same process.
    "ChatWsFunction": (347, 1024),
    "DocumentsFunction": (330, 1024),  # an upload is 80 MB + up to 50 MB; /health/detailed loads the model
    "IngestFunction": (477, 2048),
    "EventsRedeliveryFunction": (60, 256),
    # Init with the service's clients built, measured locally (python3.11, not yet on Lambda).
    "WebhooksFunction": (89, 256),
    "WebhookDispatcherFunction": (82, 256),
    # Init, a request and its boto3 clients, with the test harness (moto, pytest) imported too: an upper bound.
    "KeysFunction": (107, 256),
    # Init, history, popular and usage reads on moto, harness imported: an upper bound (/tmp/insight_mem.py in the report).
    "InsightFunction": (129, 256),
}


def test_every_function_sets_its_memory_from_a_measured_peak():
    assert set(MEMORY) == set(FUNCTIONS)
    for name, (peak_mb, memory_mb) in MEMORY.items():
        assert props(name)["MemorySize"] == memory_mb, name
        assert memory_mb >= 1.9 * peak_mb, name


def test_the_model_loads_with_constant_folding_unless_the_deployer_chooses_fast_load():
    """Folding: ~5 ms per query embedding instead of ~27 ms; fast load saves ~0.2 s per cold start.
    Ingest folds whatever the parameter says (throughput)."""
    globals_env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert TEMPLATE["Parameters"]["EmbeddingFastLoad"]["Default"] == "false"
    assert globals_env["RAGLINE_EMBEDDING_FAST_LOAD"] == {"Ref": "EmbeddingFastLoad"}
    assert props("IngestFunction")["Environment"]["Variables"]["RAGLINE_EMBEDDING_FAST_LOAD"] == "false"


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_samconfig_overrides_are_template_parameters_with_allowed_values(environment):
    samconfig = tomllib.loads((REPO / "samconfig.toml").read_text())
    overrides = dict(
        item.split("=", 1) for item in samconfig[environment]["deploy"]["parameters"]["parameter_overrides"].split()
    )
    parameters = TEMPLATE["Parameters"]
    assert set(overrides) <= set(parameters)
    for name, value in overrides.items():
        assert value in [str(allowed) for allowed in parameters[name].get("AllowedValues", [value])], (name, value)
    assert overrides["SnapStart"] == ("PublishedVersions" if environment == "prod" else "None")


def test_held_events_are_redelivered_every_minute_by_a_function_that_may_publish_them():
    events = props("EventsRedeliveryFunction")["Events"]
    assert [(e["Type"], e["Properties"]["ScheduleExpression"]) for e in events.values()] == [
        ("ScheduleV2", "rate(1 minute)")
    ]
    policies = json.dumps(props("EventsRedeliveryFunction")["Policies"])
    assert "DynamoDBCrudPolicy" in policies and "SNSPublishMessagePolicy" in policies
    assert "Layers" not in props("EventsRedeliveryFunction")  # CoreLayer only (Globals)
    # Every function that publishes events may also hold them in the table (PutItem).
    for name, spec in FUNCTIONS.items():
        granted = json.dumps(spec["Properties"].get("Policies", []))
        if "SNSPublishMessagePolicy" in granted:
            assert "DynamoDBCrudPolicy" in granted or "DynamoDBWritePolicy" in granted, name


def test_snapstart_is_one_parameter_for_the_buffered_api_functions():
    assert TEMPLATE["Parameters"]["SnapStart"]["Default"] == "None"
    for name in ("SearchFunction", "ChatFunction", "DocumentsFunction"):
        assert props(name)["SnapStart"] == {"ApplyOn": {"Ref": "SnapStart"}}, name
        assert props(name)["AutoPublishAlias"] == "live", name  # SnapStart applies to published versions
    # The authorizer and the Web Adapter's stream function start without it (infra/README.md says why);
    # ingest is not on a request's path.
    for name in ("AuthorizerFunction", "StreamChatFunction", "IngestFunction"):
        assert "SnapStart" not in props(name), name


def test_opensearch_serverless_is_not_an_option():
    """The adapter refuses Serverless collections (no client ids, no _delete_by_query, no refresh)."""
    parameters = TEMPLATE["Parameters"]
    assert parameters["VectorStore"]["AllowedValues"] == ["domain", "external"]
    assert parameters["VectorStore"]["Default"] == "domain"
    assert "sigv4-aoss" not in parameters["ExternalOpenSearchAuthMode"]["AllowedValues"]
    assert not any(spec["Type"].startswith("AWS::OpenSearchServerless::") for spec in RESOURCES.values())
    assert "aoss" not in json.dumps(TEMPLATE)
    samconfig = tomllib.loads((REPO / "samconfig.toml").read_text())
    for env in ("dev", "prod"):
        overrides = samconfig[env]["deploy"]["parameters"]["parameter_overrides"].split()
        (vector_store,) = [item for item in overrides if item.startswith("VectorStore=")]
        assert vector_store.split("=", 1)[1] in parameters["VectorStore"]["AllowedValues"], env
    # SAM keys a layer's build cache on ContentUri only: a cached CoreLayer would miss shared/ragline changes.
    assert "cached" not in samconfig["default"]["build"]["parameters"]


def test_ingest_timing_and_retries_agree_across_function_queue_and_settings():
    ingest = props("IngestFunction")
    queue = props("IngestQueue")
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    (event,) = ingest["Events"].values()
    assert event["Type"] == "SQS" and event["Properties"]["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 <= event["Properties"]["BatchSize"] <= 10
    assert queue["VisibilityTimeout"] >= 6 * ingest["Timeout"]
    assert int(env["RAGLINE_INGEST_RECLAIM_AFTER_SECONDS"]) == ingest["Timeout"] == 900
    assert int(env["RAGLINE_INGEST_MAX_RECEIVES"]) == queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert props("IngestDeadLetterQueue")["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_webhook_dispatch_timing_retries_and_permissions_agree():
    dispatcher, queue = props("WebhookDispatcherFunction"), props("WebhookQueue")
    (event,) = dispatcher["Events"].values()
    assert event["Type"] == "SQS" and event["Properties"]["Queue"] == {"Fn::GetAtt": ["WebhookQueue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 <= event["Properties"]["BatchSize"] <= 10
    # Each attempt may take the whole webhook timeout (15 s); a batch's run at once, plus fan-out and writes.
    assert dispatcher["Timeout"] >= 2 * 15
    assert queue["VisibilityTimeout"] >= 6 * dispatcher["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"]}
    assert queue["RedrivePolicy"]["maxReceiveCount"] >= 3
    subscription = props("WebhookEventsSubscription")
    assert subscription == {
        "TopicArn": {"Ref": "EventsTopic"},
        "Protocol": "sqs",
        "Endpoint": {"Fn::GetAtt": ["WebhookQueue", "Arn"]},
        "RawMessageDelivery": True,
    }
    (statement,) = props("WebhookQueuePolicy")["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Ref": "EventsTopic"}
    assert TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["RAGLINE_WEBHOOK_QUEUE_URL"] == {
        "Ref": "WebhookQueue"
    }
    assert props("MetadataTable")["TimeToLiveSpecification"] == time_to_live()
    # Whoever schedules deliveries may send to the queue; the dispatcher also announces webhook.disabled.
    for name in ("WebhooksFunction", "WebhookDispatcherFunction"):
        policies = props(name)["Policies"]
        assert {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["WebhookQueue", "QueueName"]}}} in policies
        assert "DynamoDBCrudPolicy" in json.dumps(policies), name
    assert "SNSPublishMessagePolicy" in json.dumps(dispatcher["Policies"])


def test_the_webhooks_function_serves_the_webhooks_routes_and_only_them(tmp_path):
    from ragline.api.app import create_app
    from ragline.config import Settings
    from ragline.container import Container

    app = create_app(Container(Settings(data_dir=tmp_path)), routers=("webhooks",))
    served = {
        (re.sub(r"\{[^}]+\}", "{}", path), method.upper())
        for path, ops in app.openapi()["paths"].items()
        for method in ops
    }
    routed = {
        (re.sub(r"\{[^}]+\}", "{}", path), method) for fn, path, method, _ in api_events() if fn == "WebhooksFunction"
    }
    assert routed == served
    assert not {(path, method) for fn, path, method, _ in api_events() if fn != "WebhooksFunction"} & routed


def test_bucket_notifications_are_as_specified():
    configurations = props("DocumentsBucket")["NotificationConfiguration"]["QueueConfigurations"]
    seen = {
        (item["Event"], item["Filter"]["S3Key"]["Rules"][0]["Value"])
        for item in configurations
        if item["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    }
    assert seen == {
        ("s3:ObjectCreated:*", "inbox/"),
        ("s3:ObjectRemoved:*", "inbox/"),
        ("s3:ObjectCreated:*", "uploads/"),
    }
    # The queue policy names the bucket by a built ARN: a !GetAtt would make bucket and policy circular.
    (statement,) = props("IngestQueuePolicy")["PolicyDocument"]["Statement"]
    assert "Fn::Sub" in statement["Condition"]["ArnLike"]["aws:SourceArn"]
    assert not references(props("IngestQueuePolicy")) & {"DocumentsBucket"}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.sub(r"\[.*\]", "", requirement)).lower()


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, separator, version = line.partition("==")
            assert separator and version, f"not an exact pin: {line}"
            pins[_name(name)] = version
    return pins


def _layer_locks() -> dict[str, dict[str, str]]:
    return {
        folder: _pins((REPO / "infra" / "layers" / folder / "requirements.txt").read_text().splitlines())
        for folder in LAYERS.values()
    }


# pyproject dependencies no layer ships, and why (infra/README.md).
NOT_IN_LAYERS = {
    "boto3": "the Lambda runtime's boto3 is used",
    "faiss-cpu": "the embedded engine; deployed, vectors live in OpenSearch",
    "watchdog": "the local inbox watcher",
    "rich": "the CLI",
    "pyyaml": "template tooling (provision, tests)",
    "fonttools": "optional for pypdf; 27 MiB",
    "fastapi-offline": "the /docs and /redoc assets of ragline serve",
    "ragline-client": "the CLI's remote mode",
}
# Declared dependencies of shipped packages that are not shipped, and why.
NOT_SHIPPED_DEPENDENCIES = {
    "botocore": "provided by the Lambda runtime",
    "opensearch-protobufs": "opensearch-py's gRPC client only; the HTTP client never imports it",
    "flatbuffers": "not imported by onnxruntime to run a model",
    "protobuf": "not imported by onnxruntime to run a model",
    "packaging": "not imported by onnxruntime to run a model",
    "huggingface-hub": "tokenizers imports it for from_pretrained() only",
}


def _uv_lock() -> dict[str, str]:
    """uv.lock's version of every package in the dev/test closure (the project itself has none pinned)."""
    packages = tomllib.loads((REPO / "uv.lock").read_text())["package"]
    return {_name(package["name"]): package["version"] for package in packages if package["name"] != "ragline"}


def test_layer_locks_pin_what_pyproject_and_uv_lock_pin():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all("==" in line for line in pyproject), "pyproject pins exact versions"
    direct = _pins(pyproject)
    locked = _uv_lock()
    locks = _layer_locks()
    assert not set(locks["core"]) & set(locks["embedding"]), "a package in both layers"
    shipped = {name: version for pins in locks.values() for name, version in pins.items()}
    for name, version in shipped.items():
        if name in direct:
            assert version == direct[name], f"{name}: layer {version}, pyproject {direct[name]}"
        # Direct or transitive: the version the project is tested with is uv.lock's.
        assert version == locked.get(name), f"{name}: layer {version}, uv.lock {locked.get(name)} (make lock)"
    assert set(direct) - set(shipped) == set(NOT_IN_LAYERS)


def test_the_venv_is_exactly_uv_lock():
    """make installs with `uv sync --frozen`: a venv that differs from the lock was installed some other way."""
    differ = {
        name: (version, importlib.metadata.version(name))
        for name, version in _uv_lock().items()
        if _installed_version(name) not in (None, version)
    }
    assert not differ, f"installed versions differ from uv.lock (lock, venv): {differ}"


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:  # platform-specific or another extra's package
        return None


def test_layer_locks_are_closed():
    """Installed with --no-deps: every dependency a shipped package declares must be shipped too, or be
    knowingly left out (a version bump that adds a dependency fails here, not on Lambda)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    lambda_python = {
        **default_environment(),
        "python_version": "3.12",
        "python_full_version": "3.12.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    shipped = {name for pins in _layer_locks().values() for name in pins}
    missing: dict[str, set[str]] = {}
    for name in shipped:
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(lambda_python):
                continue
            if _name(requirement.name) not in shipped:
                missing.setdefault(_name(requirement.name), set()).add(name)
    assert set(missing) == set(NOT_SHIPPED_DEPENDENCIES), missing


# ---- the resolver ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"Ref": "Stage"}, "dev"),
        ({"Ref": "AWS::StackName"}, "st"),
        ({"Fn::Sub": "${AWS::StackName}-documents-${AWS::AccountId}"}, "st-documents-123456789012"),
        ({"Fn::Sub": ["${A}-${Stage}", {"A": {"Ref": "AWS::Region"}}]}, "eu-west-1-dev"),
        ({"Fn::Sub": "${!Literal}-${Q.Arn}"}, "${Literal}-arn:q"),
        ({"Fn::Join": ["/", ["a", {"Ref": "Q"}]]}, "a/https://q"),
        ({"Fn::If": ["UseBedrock", "b", {"Fn::If": ["UseDomain", "d", "x"]}]}, "d"),
        ({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}, "b"),
        ({"Fn::GetAtt": ["Q", "QueueName"]}, "q"),
        ([1, {"Ref": "AWS::NoValue"}, 2], [1, 2]),
        ({"Statement": {"Condition": {"Bool": {"x": "y"}}}}, {"Statement": {"Condition": {"Bool": {"x": "y"}}}}),
    ],
)
def test_resolver(expression, expected):
    resolver = Resolver(TEMPLATE, stack_name="st", region="eu-west-1", account_id="123456789012")
    resolver.created["Q"] = _Created(ref="https://q", attributes={"Arn": "arn:q", "QueueName": "q"})
    assert resolver.resolve(expression) == expected


def test_resolver_conditions_follow_parameters():
    resolver = Resolver(
        TEMPLATE, stack_name="st", region="us-east-1", account_id="1", parameters={"VectorStore": "external"}
    )
    assert not resolver.condition("UseDomain")
    assert Resolver(TEMPLATE, stack_name="st", region="us-east-1", account_id="1").condition("UseDomain")
    with pytest.raises(TemplateError, match="unknown template parameters"):
        Resolver(TEMPLATE, stack_name="st", region="us-east-1", account_id="1", parameters={"Nope": "x"})


# ---- deployable_subset -----------------------------------------------------------------------------
EMULATED = {"AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::SQS::QueuePolicy", "AWS::SNS::Topic"}


def test_deployable_subset_is_plain_and_self_contained():
    subset = deployable_subset(TEMPLATE, EMULATED)
    assert "Transform" not in subset and "Globals" not in subset
    kinds = {spec["Type"] for spec in subset["Resources"].values()}
    assert kinds == EMULATED
    names = set(subset["Resources"]) | set(subset.get("Parameters", {}))
    assert references(subset) <= names
    for spec in subset["Resources"].values():
        assert set(spec.get("DependsOn", [])) <= set(subset["Resources"])
    assert set(subset.get("Conditions", {})) <= set(TEMPLATE["Conditions"])
    assert {"DocumentsBucketName", "IngestQueueUrl", "EventsTopicArn"} <= set(subset["Outputs"])
    assert not {"ApiUrl", "MetadataTableName", "UsagePlanId", "OpenSearchEndpoint"} & set(subset["Outputs"])
    with pytest.raises(ValueError, match="SAM types"):
        deployable_subset(TEMPLATE, {"AWS::Serverless::Function"})


# ---- provisioning on moto --------------------------------------------------------------------------
@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    clients.reset_clients()
    yield
    clients.reset_clients()


@pytest.fixture
def in_process(aws_credentials: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def moto_server(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        clients.reset_clients()
        yield
    finally:
        server.stop()


@pytest.fixture(params=["in_process", "moto_server"])
def emulator(request: pytest.FixtureRequest) -> None:
    request.getfixturevalue(request.param)


def _receive(queue_url: str, *, wait_seconds: float = 5.0) -> list[dict[str, Any]]:
    sqs = clients.client("sqs")
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        # WaitTimeSeconds=0: the template's queue long-polls for 20 s, longer than the clients' read timeout.
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = messages.get("Messages", [])
        if messages:
            return messages
        time.sleep(0.1)
    return []


def _check_resources(resources: ProvisionedResources) -> None:
    s3, sqs, sns, dynamodb = (clients.client(name) for name in ("s3", "sqs", "sns", "dynamodb"))
    assert resources.documents_bucket == "ragline-test-documents-123456789012"
    assert s3.get_public_access_block(Bucket=resources.documents_bucket)["PublicAccessBlockConfiguration"][
        "BlockPublicAcls"
    ]
    notifications = s3.get_bucket_notification_configuration(Bucket=resources.documents_bucket)
    assert {
        (tuple(item["Events"]), item["Filter"]["Key"]["FilterRules"][0]["Value"])
        for item in notifications["QueueConfigurations"]
    } == {
        (("s3:ObjectCreated:*",), "inbox/"),
        (("s3:ObjectRemoved:*",), "inbox/"),
        (("s3:ObjectCreated:*",), "uploads/"),
    }

    attributes = sqs.get_queue_attributes(QueueUrl=resources.ingest_queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["QueueArn"] == resources.ingest_queue_arn
    assert int(attributes["VisibilityTimeout"]) == resources.visibility_timeout == 5400
    dlq_arn = sqs.get_queue_attributes(QueueUrl=resources.dead_letter_queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
    policy = json.loads(attributes["Policy"])
    assert policy["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"] == (
        f"arn:aws:s3:::{resources.documents_bucket}"
    )
    dlq = sqs.get_queue_attributes(QueueUrl=resources.dead_letter_queue_url, AttributeNames=["All"])["Attributes"]
    assert dlq["MessageRetentionPeriod"] == "1209600"

    assert sns.get_topic_attributes(TopicArn=resources.events_topic_arn)["Attributes"]["DisplayName"]

    table = dynamodb.describe_table(TableName=resources.table_name)["Table"]
    expected = table_definitions(resources.table_name)[0]
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == expected["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        expected["AttributeDefinitions"], key=lambda a: a["AttributeName"]
    )
    assert {index["IndexName"] for index in table["GlobalSecondaryIndexes"]} == {
        index["IndexName"] for index in expected["GlobalSecondaryIndexes"]
    }
    backups = dynamodb.describe_continuous_backups(TableName=resources.table_name)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    ttl = dynamodb.describe_time_to_live(TableName=resources.table_name)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED" and ttl["AttributeName"] == TTL_ATTRIBUTE

    # Webhooks: the events topic feeds the deliveries queue raw, and the queue has its dead-letter queue.
    webhook_queue = sqs.get_queue_attributes(QueueUrl=resources.webhook_queue_url, AttributeNames=["All"])["Attributes"]
    webhook_dlq_arn = sqs.get_queue_attributes(
        QueueUrl=resources.webhook_dead_letter_queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert json.loads(webhook_queue["RedrivePolicy"]) == {"deadLetterTargetArn": webhook_dlq_arn, "maxReceiveCount": 5}
    assert json.loads(webhook_queue["Policy"])["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] == (
        resources.events_topic_arn
    )
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=resources.events_topic_arn)["Subscriptions"]
    (subscription,) = [s for s in subscriptions if s["Endpoint"] == webhook_queue["QueueArn"]]
    assert subscription["Protocol"] == "sqs"
    subscription_attributes = sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])
    assert subscription_attributes["Attributes"]["RawMessageDelivery"] == "true"


@pytest.mark.usefixtures("emulator")
def test_provision_creates_the_template_resources_idempotently():
    first = provision("ragline-test")
    _check_resources(first)
    sqs = clients.client("sqs")
    (test_event,) = _receive(first.ingest_queue_url)
    assert json.loads(test_event["Body"])["Event"] == "s3:TestEvent"
    sqs.delete_message(QueueUrl=first.ingest_queue_url, ReceiptHandle=test_event["ReceiptHandle"])
    second = provision("ragline-test")
    assert second == first
    _check_resources(second)
    # Unchanged notifications are not put again (each put sends S3's test event to the queue).
    assert _receive(first.ingest_queue_url, wait_seconds=0.5) == []
    assert settings_overrides(first) == {
        "documents_bucket": first.documents_bucket,
        "ingest_queue_url": first.ingest_queue_url,
        "webhook_queue_url": first.webhook_queue_url,
        "events_topic_arn": first.events_topic_arn,
        "table_name": first.table_name,
        "ingest_max_receives": 5,
    }
    # Only what the template declares and the emulator can hold: no functions, no API, no OpenSearch.
    assert set(first.physical_ids) == {
        "DocumentsBucket",
        "IngestQueue",
        "IngestDeadLetterQueue",
        "IngestQueuePolicy",
        "EventsTopic",
        "MetadataTable",
        "WebhookQueue",
        "WebhookDeadLetterQueue",
        "WebhookQueuePolicy",
        "WebhookEventsSubscription",
    }


@pytest.mark.usefixtures("emulator")
@pytest.mark.parametrize("key", ["inbox/t1/a.txt", "inbox/t1/with space & more.txt", "uploads/doc-1/b.pdf"])
def test_a_dropped_file_notifies_the_ingest_queue(key):
    resources = provision("ragline-test")
    s3 = clients.client("s3")
    s3.put_object(Bucket=resources.documents_bucket, Key="elsewhere/ignored.txt", Body=b"no")
    s3.put_object(Bucket=resources.documents_bucket, Key=key, Body=b"hello")
    records = [
        record
        for message in _receive(resources.ingest_queue_url)
        for record in json.loads(message["Body"]).get("Records", [])
    ]
    assert [unquote_plus(record["s3"]["object"]["key"]) for record in records] == [key]
    assert records[0]["eventName"].startswith("ObjectCreated")
    if " " in key:
        assert " " not in records[0]["s3"]["object"]["key"]  # S3 URL-encodes keys in notifications


@pytest.mark.usefixtures("emulator")
def test_a_message_received_too_often_moves_to_the_dead_letter_queue():
    resources = provision("ragline-test")
    sqs = clients.client("sqs")
    sqs.purge_queue(QueueUrl=resources.ingest_queue_url)  # S3's s3:TestEvent from the notification set-up
    sqs.send_message(QueueUrl=resources.ingest_queue_url, MessageBody="poison")
    receive = {"QueueUrl": resources.ingest_queue_url, "VisibilityTimeout": 0, "WaitTimeSeconds": 0}
    for _ in range(resources.max_receive_count):
        (message,) = sqs.receive_message(**receive)["Messages"]
        assert message["Body"] == "poison"
    # moto applies the redrive policy on the receive after maxReceiveCount.
    assert sqs.receive_message(**receive).get("Messages", []) == []
    assert [message["Body"] for message in _receive(resources.dead_letter_queue_url)] == ["poison"]


@pytest.mark.usefixtures("in_process")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS")  # moto's CloudFormation skips the QueuePolicy
def test_the_plain_subset_deploys_on_moto_cloudformation():
    subset = deployable_subset(TEMPLATE, EMULATED)
    cloudformation = clients.client("cloudformation")
    cloudformation.create_stack(StackName="ragline-subset", TemplateBody=json.dumps(subset))
    (stack,) = cloudformation.describe_stacks(StackName="ragline-subset")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack["Outputs"]}
    assert outputs["DocumentsBucketName"] == "ragline-subset-documents-123456789012"
    clients.client("s3").head_bucket(Bucket=outputs["DocumentsBucketName"])
    assert clients.client("sqs").get_queue_attributes(QueueUrl=outputs["IngestQueueUrl"], AttributeNames=["All"])


def test_template_path_defaults_to_the_repo_root(monkeypatch):
    monkeypatch.delenv("RAGLINE_TEMPLATE", raising=False)
    assert default_template_path() == Path(REPO / "template.yaml").resolve()


def test_the_rate_limit_is_a_parameter_with_the_settings_default_and_the_functions_may_count():
    from ragline.config import Settings

    parameter = TEMPLATE["Parameters"]["RateLimitPerMinute"]
    assert parameter["Default"] == Settings.model_fields["rate_limit_per_minute"].default == 120
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["RAGLINE_RATE_LIMIT_PER_MINUTE"] == {"Ref": "RateLimitPerMinute"}
    # The counters expire by the table's TTL attribute; every keyed function may UpdateItem the table.
    table = TEMPLATE["Resources"]["MetadataTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "delete_after", "Enabled": True}
    for name in ("SearchFunction", "ChatFunction", "StreamChatFunction", "DocumentsFunction", "WebhooksFunction"):
        policies = [next(iter(p)) for p in props(name)["Policies"] if isinstance(p, dict) and len(p) == 1]
        assert {"DynamoDBCrudPolicy", "DynamoDBWritePolicy"} & set(policies), name
    assert {"DynamoDBCrudPolicy"} & {next(iter(p)) for p in props("KeysFunction")["Policies"] if isinstance(p, dict)}


def test_api_paths_use_one_variable_name_per_level():
    """API Gateway refuses a deployment where sibling resources are different variables
    (`/documents/{id}` beside `/documents/{document_id}/stats`)."""
    variables: dict[str, set[str]] = {}
    for _, path, _, _ in api_events():
        parts = path.strip("/").split("/")
        for depth, part in enumerate(parts):
            if part.startswith("{"):
                variables.setdefault("/".join(parts[:depth]), set()).add(part)
    assert {parent: names for parent, names in variables.items() if len(names) > 1} == {}
