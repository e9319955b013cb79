"""Create what ``template.yaml`` declares for storage and messaging, on an emulator (moto, LocalStack).

The template is the single list of resources: this module reads it, resolves the intrinsics it
needs, and creates its S3 buckets (with their queue notifications), SQS queues and queue policies,
SNS topics and subscriptions and DynamoDB tables, idempotently. Everything else (functions, API, OpenSearch, IAM)
cannot run on the emulators here and is skipped.

``deployable_subset`` turns the SAM template into a plain CloudFormation template holding only
some resource types, for emulators whose CloudFormation cannot take the SAM transform.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

from ragline.adapters.aws.clients import client, error_code, resolve_region
from ragline.errors import ConfigurationError

log = logging.getLogger(__name__)

# Logical ids of template.yaml that the application is configured with (a contract, see the template).
DOCUMENTS_BUCKET = "DocumentsBucket"
INGEST_QUEUE = "IngestQueue"
DEAD_LETTER_QUEUE = "IngestDeadLetterQueue"
EVENTS_TOPIC = "EventsTopic"
METADATA_TABLE = "MetadataTable"
WEBHOOK_QUEUE = "WebhookQueue"
WEBHOOK_DEAD_LETTER_QUEUE = "WebhookDeadLetterQueue"

S3_BUCKET = "AWS::S3::Bucket"
SQS_QUEUE = "AWS::SQS::Queue"
SQS_QUEUE_POLICY = "AWS::SQS::QueuePolicy"
SNS_TOPIC = "AWS::SNS::Topic"
SNS_SUBSCRIPTION = "AWS::SNS::Subscription"
DYNAMODB_TABLE = "AWS::DynamoDB::Table"

TABLE_WAIT_SECONDS = 60


class TemplateError(ConfigurationError):
    """The template is missing, or uses something this small resolver cannot evaluate."""


# ---- loading ---------------------------------------------------------------------------------------
class CloudFormationLoader(yaml.SafeLoader):
    """A safe YAML loader that maps CloudFormation short tags (``!Ref``, ``!Sub`` …) to their long form."""


_SHORT_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{
        name: f"Fn::{name}"
        for name in (
            "Sub",
            "GetAtt",
            "If",
            "Equals",
            "Join",
            "Select",
            "Split",
            "Not",
            "And",
            "Or",
            "FindInMap",
            "ImportValue",
            "GetAZs",
            "Base64",
            "Cidr",
            "Length",
            "ToJsonString",
        )
    },
}


def _short_tag_constructor(long_name: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if long_name == "Fn::GetAtt":  # !GetAtt Resource.Attribute (the attribute may contain dots)
                resource, _, attribute = str(value).partition(".")
                value = [resource, attribute]
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {long_name: value}

    return construct


for _tag, _long in _SHORT_TAGS.items():
    CloudFormationLoader.add_constructor(f"!{_tag}", _short_tag_constructor(_long))


def default_template_path() -> Path:
    configured = os.environ.get("RAGLINE_TEMPLATE")
    if configured:
        return Path(configured)
    # shared/ragline_emulator/provision.py → the repository root, where template.yaml sits.
    return Path(__file__).resolve().parents[2] / "template.yaml"


def load_template(path: Path | None = None) -> dict[str, Any]:
    path = path or default_template_path()
    if not path.is_file():
        raise TemplateError(
            f"CloudFormation template not found at {path}: set RAGLINE_TEMPLATE to the path of template.yaml"
        )
    loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=CloudFormationLoader)  # a SafeLoader subclass
    if not isinstance(loaded, dict) or not isinstance(loaded.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources mapping)")
    return loaded


# ---- intrinsic functions ---------------------------------------------------------------------------
class _NoValue:
    """``!Ref AWS::NoValue``: the property or list item disappears."""


NO_VALUE = _NoValue()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


@dataclass
class _Created:
    ref: str
    attributes: dict[str, str]


class Resolver:
    """Evaluates the intrinsics of one template for one stack, against what has been created so far."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        stack_name: str,
        region: str,
        account_id: str,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self.template = template
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        declared = template.get("Parameters") or {}
        unknown = set(parameters or {}) - set(declared)
        if unknown:
            raise TemplateError(f"unknown template parameters: {sorted(unknown)}")
        self.parameters: dict[str, Any] = {
            name: spec["Default"] for name, spec in declared.items() if "Default" in spec
        }
        self.parameters.update(parameters or {})
        self.created: dict[str, _Created] = {}
        self._conditions: dict[str, bool] = {}

    # pseudo parameters, then template parameters, then created resources
    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local",
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.created:
            return self.created[name].ref
        raise TemplateError(f"cannot resolve Ref {name}: not a parameter with a value nor a created resource")

    def get_att(self, resource: str, attribute: str) -> str:
        created = self.created.get(resource)
        if created is None or attribute not in created.attributes:
            raise TemplateError(f"cannot resolve GetAtt {resource}.{attribute}: not created here")
        return created.attributes[attribute]

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            handler = self._intrinsics.get(key)
            # An IAM statement's `Condition` is a mapping; only `Condition: <name>` is the intrinsic.
            if handler is not None and not (key == "Condition" and not isinstance(argument, str)):
                return handler(self, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {name: self.resolve(v) for name, v in argument[1].items()}
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, _, attribute = name.partition(".")
                return self.get_att(resource, attribute)
            return str(self.ref(name))

        substituted = _SUB_VARIABLE.sub(replace, text)
        return substituted.replace("${!", "${")  # ${!Literal} stands for the text ${Literal}

    def _if(self, argument: list[Any]) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name) else when_false)

    def _find_in_map(self, argument: list[Any]) -> Any:
        map_name, top, second = (self.resolve(part) for part in argument)
        return self.template["Mappings"][map_name][top][second]

    def _unsupported(self, argument: Any) -> Any:
        raise TemplateError(f"intrinsic not supported on an emulator: {argument!r}")

    _intrinsics: dict[str, Callable[[Resolver, Any], Any]] = {
        "Ref": lambda self, name: self.ref(name),
        "Fn::GetAtt": lambda self, arg: self.get_att(*(arg.split(".", 1) if isinstance(arg, str) else arg)),
        "Fn::Sub": _sub,
        "Fn::Join": lambda self, arg: str(arg[0]).join(str(item) for item in self.resolve(arg[1])),
        "Fn::Select": lambda self, arg: self.resolve(arg[1])[int(self.resolve(arg[0]))],
        "Fn::Split": lambda self, arg: str(self.resolve(arg[1])).split(arg[0]),
        "Fn::If": _if,
        "Fn::Equals": lambda self, arg: str(self.resolve(arg[0])) == str(self.resolve(arg[1])),
        "Fn::Not": lambda self, arg: not self.resolve(arg[0]),
        "Fn::And": lambda self, arg: all(self.resolve(item) for item in arg),
        "Fn::Or": lambda self, arg: any(self.resolve(item) for item in arg),
        "Condition": lambda self, name: self.condition(name),
        "Fn::FindInMap": _find_in_map,
        "Fn::GetAZs": lambda self, arg: [f"{self.region}{zone}" for zone in "abc"],
        "Fn::Base64": lambda self, arg: base64.b64encode(str(self.resolve(arg)).encode()).decode(),
        "Fn::ImportValue": _unsupported,
    }


# ---- dependencies ----------------------------------------------------------------------------------
def references(value: Any) -> set[str]:
    """Names a value refers to through Ref, GetAtt, Sub variables and Condition (pseudo parameters excluded)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item.split(".", 1)[0] if isinstance(item, str) else item[0])
            elif key == "Fn::Sub":
                text, variables = (item[0], item[1]) if isinstance(item, list) else (item, {})
                names = {match.split(".", 1)[0].strip() for match in _SUB_VARIABLE.findall(text)}
                found |= names - set(variables)
                found |= references(variables)
            else:
                found |= references(item)
    return {name for name in found if not name.startswith("AWS::")}


def _depends_on(resource: Mapping[str, Any]) -> set[str]:
    depends = resource.get("DependsOn") or []
    return {depends} if isinstance(depends, str) else set(depends)


def creation_order(resources: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Logical ids so that each comes after the resources it references (a DLQ before its queue)."""
    edges = {
        name: (references(spec.get("Properties", {})) | _depends_on(spec)) & set(resources)
        for name, spec in resources.items()
    }
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise TemplateError(f"circular dependency through {name}")
        visiting.add(name)
        for dependency in sorted(edges[name]):
            visit(dependency)
        visiting.discard(name)
        ordered.append(name)

    for name in sorted(resources):
        visit(name)
    return ordered


# ---- creating resources ----------------------------------------------------------------------------
def _physical_name(stack_name: str, logical_id: str, *, max_length: int) -> str:
    # Deterministic (unlike CloudFormation's random suffix) so a second run finds the same resource.
    return f"{stack_name}-{logical_id}"[:max_length]


def _attribute_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _ensure_queue(logical_id: str, properties: dict[str, Any], ctx: _Context) -> _Created:
    sqs = client("sqs")
    fifo = bool(properties.get("FifoQueue"))
    name = properties.get("QueueName") or _physical_name(ctx.stack_name, logical_id, max_length=75 if fifo else 80)
    if fifo and not name.endswith(".fifo"):
        name += ".fifo"
    attributes = {
        key: _attribute_string(value) for key, value in properties.items() if key not in ("QueueName", "Tags")
    }
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if error_code(exc) not in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            raise
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    else:
        # Exists: bring it to the template's settings (FifoQueue cannot change after creation).
        mutable = {key: value for key, value in attributes.items() if key != "FifoQueue"}
        if mutable:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=mutable)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return _Created(ref=url, attributes={"Arn": arn, "QueueUrl": url, "QueueName": name})


def _ensure_queue_policy(logical_id: str, properties: dict[str, Any], ctx: _Context) -> _Created:
    sqs = client("sqs")
    policy = json.dumps(properties["PolicyDocument"])
    for url in properties["Queues"]:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})
    return _Created(ref=f"{ctx.stack_name}-{logical_id}", attributes={})


def _ensure_topic(logical_id: str, properties: dict[str, Any], ctx: _Context) -> _Created:
    sns = client("sns")
    fifo = bool(properties.get("FifoTopic"))
    name = properties.get("TopicName") or _physical_name(ctx.stack_name, logical_id, max_length=251 if fifo else 256)
    if fifo and not name.endswith(".fifo"):
        name += ".fifo"
    # CreateTopic is idempotent by name; attributes are set afterwards so a changed one is not a conflict.
    arn = sns.create_topic(Name=name, Attributes={"FifoTopic": "true"} if fifo else {})["TopicArn"]
    for key in ("DisplayName", "KmsMasterKeyId", "ContentBasedDeduplication", "SignatureVersion", "TracingConfig"):
        if key in properties:
            sns.set_topic_attributes(TopicArn=arn, AttributeName=key, AttributeValue=_attribute_string(properties[key]))
    skipped = set(properties) - {
        "TopicName",
        "FifoTopic",
        "DisplayName",
        "KmsMasterKeyId",
        "ContentBasedDeduplication",
        "SignatureVersion",
        "TracingConfig",
    }
    if skipped:
        log.debug("%s: not applied on the emulator: %s", logical_id, sorted(skipped))
    return _Created(ref=arn, attributes={"TopicArn": arn, "TopicName": name})


# Subscription properties that are subscription attributes (the rest are Subscribe's own arguments).
_SUBSCRIPTION_ATTRIBUTES = ("RawMessageDelivery", "FilterPolicy", "FilterPolicyScope", "RedrivePolicy")


def _ensure_subscription(logical_id: str, properties: dict[str, Any], ctx: _Context) -> _Created:
    sns = client("sns")
    topic, protocol, endpoint = properties["TopicArn"], properties["Protocol"], properties["Endpoint"]
    attributes = {key: _attribute_string(properties[key]) for key in _SUBSCRIPTION_ATTRIBUTES if key in properties}
    existing = [
        subscription["SubscriptionArn"]
        for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic)
        for subscription in page["Subscriptions"]
        if subscription["Protocol"] == protocol and subscription["Endpoint"] == endpoint
    ]
    if existing:
        # Subscribe again with other attributes is an error: bring the one there to the template's.
        arn = existing[0]
        for key, value in attributes.items():
            sns.set_subscription_attributes(SubscriptionArn=arn, AttributeName=key, AttributeValue=value)
    else:
        arn = sns.subscribe(
            TopicArn=topic, Protocol=protocol, Endpoint=endpoint, Attributes=attributes, ReturnSubscriptionArn=True
        )["SubscriptionArn"]
    return _Created(ref=arn, attributes={"Arn": arn})


def _s3_filter(cfn_filter: Mapping[str, Any] | None) -> dict[str, Any]:
    if not cfn_filter:
        return {}
    rules = cfn_filter.get("S3Key", {}).get("Rules", [])
    return {"Filter": {"Key": {"FilterRules": [{"Name": rule["Name"], "Value": rule["Value"]} for rule in rules]}}}


def _s3_notifications(notification: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    queues = [
        {"QueueArn": item["Queue"], "Events": [item["Event"]], **_s3_filter(item.get("Filter"))}
        for item in notification.get("QueueConfigurations", [])
    ]
    topics = [
        {"TopicArn": item["Topic"], "Events": [item["Event"]], **_s3_filter(item.get("Filter"))}
        for item in notification.get("TopicConfigurations", [])
    ]
    if notification.get("LambdaConfigurations"):
        log.debug("%s: Lambda notifications skipped (no Lambda on the emulator)", logical_id)
    configuration: dict[str, Any] = {}
    if queues:
        configuration["QueueConfigurations"] = queues
    if topics:
        configuration["TopicConfigurations"] = topics
    return configuration


def _comparable(configuration: Mapping[str, Any]) -> dict[str, list[str]]:
    """A notification configuration without generated ids, metadata and order."""
    return {
        kind: sorted(
            json.dumps({key: value for key, value in item.items() if key != "Id"}, sort_keys=True)
            for item in configuration.get(kind, [])
        )
        for kind in ("QueueConfigurations", "TopicConfigurations")
    }


def _ensure_bucket(logical_id: str, properties: dict[str, Any], ctx: _Context) -> _Created:
    s3 = client("s3")
    name = properties.get("BucketName") or _physical_name(ctx.stack_name, logical_id, max_length=63).lower()
    create: dict[str, Any] = {"Bucket": name}
    if ctx.region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
    try:
        s3.create_bucket(**create)
    except ClientError as exc:
        if error_code(exc) != "BucketAlreadyOwnedByYou":
            raise
    if "PublicAccessBlockConfiguration" in properties:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"]
        )
    if "BucketEncryption" in properties:
        # CloudFormation's ServerSideEncryptionByDefault is the API's ApplyServerSideEncryptionByDefault.
        rules = [
            {("Apply" + key if key == "ServerSideEncryptionByDefault" else key): value for key, value in rule.items()}
            for rule in properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "VersioningConfiguration" in properties:
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": properties["VersioningConfiguration"]["Status"]}
        )
    if "CorsConfiguration" in properties:
        rules = [
            {
                **{
                    key: rule[key]
                    for key in ("AllowedMethods", "AllowedOrigins", "AllowedHeaders", "ExposedHeaders")
                    if key in rule
                },
                **({"MaxAgeSeconds": int(rule["MaxAge"])} if "MaxAge" in rule else {}),
            }
            for rule in properties["CorsConfiguration"]["CorsRules"]
        ]
        s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": rules})
    if "NotificationConfiguration" in properties:
        wanted = _s3_notifications(properties["NotificationConfiguration"], logical_id)
        # S3 sends an s3:TestEvent to every target on each put: only put when something changed.
        if _comparable(s3.get_bucket_notification_configuration(Bucket=name)) != _comparable(wanted):
            s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=wanted)
    applied = {
        "BucketName",
        "PublicAccessBlockConfiguration",
        "BucketEncryption",
        "VersioningConfiguration",
        "CorsConfiguration",
        "NotificationConfiguration",
    }
    skipped = set(properties) - applied
    if skipped:
        log.debug("%s: not applied on the emulator: %s", logical_id, sorted(skipped))
    return _Created(
        ref=name,
        attributes={
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{ctx.region}.amazonaws.com",
        },
    )


_TABLE_CREATE_KEYS = (
    "KeySchema",
    "AttributeDefinitions",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
    "StreamSpecification",
    "TableClass",
)


def _ensure_table(logical_id: str, properties: dict[str, Any], ctx: _Context) -> _Created:
    dynamodb = client("dynamodb")
    name = properties.get("TableName") or _physical_name(ctx.stack_name, logical_id, max_length=255)
    try:
        description = dynamodb.describe_table(TableName=name)["Table"]
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        create = {key: properties[key] for key in _TABLE_CREATE_KEYS if key in properties}
        if "SSESpecification" in properties:  # CloudFormation says SSEEnabled, the API says Enabled
            sse = dict(properties["SSESpecification"])
            create["SSESpecification"] = {"Enabled": bool(sse.pop("SSEEnabled", False)), **sse}
        description = dynamodb.create_table(TableName=name, **create)["TableDescription"]
    dynamodb.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": TABLE_WAIT_SECONDS}
    )
    recovery = properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
    if recovery is not None:
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": bool(recovery)}
        )
    if "TimeToLiveSpecification" in properties:
        ttl = properties["TimeToLiveSpecification"]
        current = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        wanted = "ENABLED" if ttl.get("Enabled") else "DISABLED"
        if current.get("TimeToLiveStatus") != wanted:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    attributes = {"Arn": description["TableArn"]}
    if description.get("LatestStreamArn"):
        attributes["StreamArn"] = description["LatestStreamArn"]
    return _Created(ref=name, attributes=attributes)


@dataclass(frozen=True)
class _Context:
    stack_name: str
    region: str


_CREATORS: dict[str, Callable[[str, dict[str, Any], _Context], _Created]] = {
    S3_BUCKET: _ensure_bucket,
    SQS_QUEUE: _ensure_queue,
    SQS_QUEUE_POLICY: _ensure_queue_policy,
    SNS_TOPIC: _ensure_topic,
    SNS_SUBSCRIPTION: _ensure_subscription,
    DYNAMODB_TABLE: _ensure_table,
}
EMULATED_TYPES = frozenset(_CREATORS)


@dataclass(frozen=True)
class ProvisionedResources:
    documents_bucket: str
    ingest_queue_url: str
    ingest_queue_arn: str
    dead_letter_queue_url: str
    events_topic_arn: str
    table_name: str
    max_receive_count: int
    visibility_timeout: int
    webhook_queue_url: str
    webhook_dead_letter_queue_url: str
    # Every created resource: logical id → physical id (what !Ref gives).
    physical_ids: dict[str, str] = field(default_factory=dict)


def _account_id() -> str:
    return str(client("sts").get_caller_identity()["Account"])


def provision(
    stack_name: str = "ragline-local",
    *,
    template: dict[str, Any] | None = None,
    parameters: dict[str, Any] | None = None,
) -> ProvisionedResources:
    """Create (or find, and align) the template's buckets, queues, topics and tables; safe to call again."""
    template = template if template is not None else load_template()
    region = resolve_region() or "us-east-1"
    resolver = Resolver(template, stack_name=stack_name, region=region, account_id=_account_id(), parameters=parameters)
    context = _Context(stack_name=stack_name, region=region)
    resources: dict[str, dict[str, Any]] = template["Resources"]
    wanted = {}
    for logical_id, spec in resources.items():
        kind = spec.get("Type", "")
        if kind not in _CREATORS:
            log.debug("skipping %s (%s): not created on an emulator", logical_id, kind)
        elif "Condition" in spec and not resolver.condition(spec["Condition"]):
            log.debug("skipping %s: condition %s is false", logical_id, spec["Condition"])
        else:
            wanted[logical_id] = spec
    for logical_id in creation_order(wanted):
        spec = wanted[logical_id]
        properties = resolver.resolve(spec.get("Properties", {}))
        resolver.created[logical_id] = _CREATORS[spec["Type"]](logical_id, properties, context)
        log.debug("provisioned %s: %s", logical_id, resolver.created[logical_id].ref)

    missing = {
        DOCUMENTS_BUCKET,
        INGEST_QUEUE,
        DEAD_LETTER_QUEUE,
        EVENTS_TOPIC,
        METADATA_TABLE,
        WEBHOOK_QUEUE,
        WEBHOOK_DEAD_LETTER_QUEUE,
    } - set(resolver.created)
    if missing:
        raise TemplateError(f"the template does not declare {sorted(missing)}")
    queue = resolver.resolve(resources[INGEST_QUEUE].get("Properties", {}))
    created = resolver.created
    return ProvisionedResources(
        documents_bucket=created[DOCUMENTS_BUCKET].ref,
        ingest_queue_url=created[INGEST_QUEUE].ref,
        ingest_queue_arn=created[INGEST_QUEUE].attributes["Arn"],
        dead_letter_queue_url=created[DEAD_LETTER_QUEUE].ref,
        events_topic_arn=created[EVENTS_TOPIC].ref,
        table_name=created[METADATA_TABLE].ref,
        max_receive_count=int(queue["RedrivePolicy"]["maxReceiveCount"]),
        visibility_timeout=int(queue.get("VisibilityTimeout", 30)),
        webhook_queue_url=created[WEBHOOK_QUEUE].ref,
        webhook_dead_letter_queue_url=created[WEBHOOK_DEAD_LETTER_QUEUE].ref,
        physical_ids={logical_id: item.ref for logical_id, item in created.items()},
    )


def settings_overrides(resources: ProvisionedResources) -> dict[str, Any]:
    """The ``Settings`` fields that point the AWS backend at the provisioned resources."""
    return {
        "documents_bucket": resources.documents_bucket,
        "ingest_queue_url": resources.ingest_queue_url,
        "webhook_queue_url": resources.webhook_queue_url,
        "events_topic_arn": resources.events_topic_arn,
        "table_name": resources.table_name,
        "ingest_max_receives": resources.max_receive_count,
    }


# ---- a plain CloudFormation subset -----------------------------------------------------------------
class _Drop:
    """Marks a value that refers to a removed resource."""


_DROP = _Drop()


def _prune(value: Any, known: set[str]) -> Any:
    """The value without anything referring to an unknown name (_DROP when the value itself does).

    ``known`` is the kept resources and the parameters: anything else is a removed resource, or one
    the SAM transform would have generated (``RagApiUsagePlan``, ``<Function>Role``).
    """
    if isinstance(value, list):
        kept = [_prune(item, known) for item in value]
        return [item for item in kept if item is not _DROP]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, argument),) = value.items()
        if key == "Fn::If":
            name, when_true, when_false = argument
            branches = [_prune(branch, known) for branch in (when_true, when_false)]
            branches = [{"Ref": "AWS::NoValue"} if branch is _DROP else branch for branch in branches]
            return {"Fn::If": [name, *branches]}
        if key in ("Ref", "Fn::GetAtt", "Fn::Sub") and references(value) - known:
            return _DROP
    kept_items = {key: _prune(item, known) for key, item in value.items()}
    return {key: item for key, item in kept_items.items() if item is not _DROP}


def _used_conditions(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _used_conditions(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Fn::If":
                found.add(item[0])
            if key == "Condition" and isinstance(item, str):
                found.add(item)
            found |= _used_conditions(item)
    return found


def deployable_subset(template: Mapping[str, Any], resource_types: Iterable[str]) -> dict[str, Any]:
    """A plain CloudFormation template with only the resources of ``resource_types`` (no SAM transform).

    References to removed resources disappear with the property or list item that holds them (an
    ``Fn::If`` branch becomes ``AWS::NoValue``) and outputs using them go; only the conditions and
    parameters still used stay.
    """
    types = set(resource_types)
    serverless = {kind for kind in types if kind.startswith("AWS::Serverless::")}
    if serverless:
        raise ValueError(f"SAM types need the transform and cannot be in a plain template: {sorted(serverless)}")
    all_resources: Mapping[str, Any] = template["Resources"]
    kept_names = {name for name, spec in all_resources.items() if spec.get("Type") in types}
    known = kept_names | set(template.get("Parameters") or {})

    resources: dict[str, Any] = {}
    for name in sorted(kept_names):
        spec = _prune(dict(all_resources[name]), known)
        depends = sorted(_depends_on(all_resources[name]) & kept_names)
        spec.pop("DependsOn", None)
        if depends:
            spec["DependsOn"] = depends
        resources[name] = spec

    # An output touching a removed resource anywhere goes (even in an Fn::If branch: an output's
    # value may not end up as AWS::NoValue).
    outputs = {
        name: output for name, output in (template.get("Outputs") or {}).items() if not references(output) - known
    }

    # Conditions only ever refer to parameters and other conditions: keep the used ones, transitively.
    all_conditions: Mapping[str, Any] = template.get("Conditions") or {}
    conditions: dict[str, Any] = {}
    pending = _used_conditions([resources, outputs])
    while pending:
        name = pending.pop()
        if name in conditions:
            continue
        conditions[name] = all_conditions[name]
        pending |= _used_conditions(conditions[name])

    used = references([resources, outputs, conditions])
    parameters = {name: spec for name, spec in (template.get("Parameters") or {}).items() if name in used}

    subset: dict[str, Any] = {"AWSTemplateFormatVersion": template.get("AWSTemplateFormatVersion", "2010-09-09")}
    if "Description" in template:
        subset["Description"] = template["Description"]
    if parameters:
        subset["Parameters"] = parameters
    if "Mappings" in template:
        subset["Mappings"] = template["Mappings"]
    if conditions:
        subset["Conditions"] = conditions
    subset["Resources"] = resources
    if outputs:
        subset["Outputs"] = outputs
    return subset
