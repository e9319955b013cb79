"""A Ragline key registered as an API Gateway usage-plan key (moto, in-process)."""

from __future__ import annotations

from moto import mock_aws

from ragline.adapters.aws import clients
from ragline.adapters.aws.api_gateway import add_usage_plan_key


def test_key_is_created_enabled_with_its_value_and_joins_the_plan(monkeypatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    clients.reset_clients()
    with mock_aws():
        apigateway = clients.client("apigateway")
        plan = apigateway.create_usage_plan(name="ragline", throttle={"rateLimit": 10.0, "burstLimit": 20})
        key_id = add_usage_plan_key(plan["id"], name="ragline-t1-key_1", value="rl_" + "x" * 40)
        key = apigateway.get_api_key(apiKey=key_id, includeValue=True)
        assert (key["value"], key["enabled"], key["name"]) == ("rl_" + "x" * 40, True, "ragline-t1-key_1")
        members = apigateway.get_usage_plan_keys(usagePlanId=plan["id"])["items"]
        assert [member["id"] for member in members] == [key_id]
    clients.reset_clients()


def test_cli_creates_an_aws_key_in_dynamodb_and_the_usage_plan(aws_env, monkeypatch, capsys) -> None:
    from ragline.cli import main
    from ragline.keys import authenticate

    stack = aws_env()
    apigateway = clients.client("apigateway")
    plan = apigateway.create_usage_plan(name="ragline", throttle={"rateLimit": 10.0, "burstLimit": 20})
    monkeypatch.setenv("RAGLINE_USAGE_PLAN_ID", plan["id"])
    assert main(["keys", "create", "--backend", "aws", "--tenant", "acme", "--scopes", "search"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]  # (after the fixture's ingest metrics)
    principal = authenticate(stack.container.store, key)
    assert (principal.tenant_id, sorted(principal.scopes)) == ("acme", ["search"])
    values = [k["value"] for k in apigateway.get_api_keys(includeValues=True)["items"]]
    assert values == [key]
