"""Dedicated signer account: a caller in another account reaches the signer only via its URL.

The signer's resource policy is the set of AWS::Lambda::Permission resources the
template declares, rendered the way Lambda's AddPermission writes them into the
function policy; the caller's own account allows it every Lambda action, so only the
signer's side decides. Evaluated with `@cloud-copilot/iam-simulate` (tests.iam_simulation).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.iam_simulation import IamSession

from .conftest import PROD, URL_CALLER, URL_CALLER_RULE, Synth, assertion_context, synthesize

SIGNER_ACCOUNT = "123456789012"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{SIGNER_ACCOUNT}:function:jwtkeys-prod-signer"
OTHER_CALLER = "arn:aws:iam::444455556666:role/payments"


@pytest.fixture(scope="module")
def layout_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """cdk.json's prod stage (dedicated signer account) with one Function URL caller."""
    context = assertion_context()
    context["jwtkeys"]["stacks"]["prod"]["function_url_callers"] = {URL_CALLER: URL_CALLER_RULE}
    return synthesize(context, tmp_path_factory.mktemp("layout.cdk.out"))


def _condition(properties: dict[str, Any]) -> dict[str, Any]:
    # What AddPermission writes for these properties (Lambda's GetPolicy shows them so).
    condition: dict[str, Any] = {}
    if "FunctionUrlAuthType" in properties:
        condition["StringEquals"] = {
            "lambda:FunctionUrlAuthType": properties["FunctionUrlAuthType"]
        }
    if properties.get("InvokedViaFunctionUrl"):
        condition["Bool"] = {"lambda:InvokedViaFunctionUrl": "true"}
    return condition


def signer_function_policy(template: dict[str, Any]) -> dict[str, Any]:
    """The signer function's resource policy, from the template's Lambda permissions."""
    signer = next(
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function" and logical_id.startswith("SignerFunction")
    )
    statements = []
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] != "AWS::Lambda::Permission":
            continue
        if properties["FunctionName"] != {"Fn::GetAtt": [signer, "Arn"]}:
            continue
        principal = properties["Principal"]
        assert isinstance(principal, str), f"{logical_id}: unexpected principal {principal}"
        statement: dict[str, Any] = {
            "Sid": logical_id,
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": properties["Action"],
            "Resource": FUNCTION_ARN,
        }
        if condition := _condition(properties):
            statement["Condition"] = condition
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def _invoke(
    iam_session: IamSession,
    template: dict[str, Any],
    caller: str,
    action: str,
    context: dict[str, str],
) -> str:
    account, name = caller.split(":")[4], caller.rsplit("/", 1)[-1]
    simulation = {
        "identityPolicies": [
            {
                "name": "CallerAccountAllowsLambda",
                "policy": {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}],
                },
            }
        ],
        "serviceControlPolicies": [],
        "resourceControlPolicies": [],
        "resourcePolicy": signer_function_policy(template),
        "request": {
            "action": action,
            "principal": f"arn:aws:sts::{account}:assumed-role/{name}/session",
            "resource": {"accountId": SIGNER_ACCOUNT, "resource": FUNCTION_ARN},
            "contextVariables": {"aws:PrincipalArn": caller, **context},
        },
    }
    (answer,) = iam_session.simulator.evaluate([simulation])
    result: str = answer["result"]
    return result


def test_prod_is_the_dedicated_signer_account_layout() -> None:
    stage = assertion_context()["jwtkeys"]["stacks"]["prod"]
    assert stage["layout"] == "dedicated_signer_account"
    assert URL_CALLER.split(":")[4] != SIGNER_ACCOUNT


def test_a_cross_account_caller_invokes_through_the_function_url(
    layout_synth: Synth, iam_session: IamSession
) -> None:
    template = layout_synth.templates[PROD]
    url = {"lambda:FunctionUrlAuthType": "AWS_IAM"}
    via_url = {"lambda:InvokedViaFunctionUrl": "true"}
    assert _invoke(iam_session, template, URL_CALLER, "lambda:InvokeFunctionUrl", url) == "Allowed"
    assert _invoke(iam_session, template, URL_CALLER, "lambda:InvokeFunction", via_url) == "Allowed"


@pytest.mark.parametrize(
    ("caller", "action", "context"),
    [
        # Directly, skipping the URL and so the per-caller rules: refused.
        (URL_CALLER, "lambda:InvokeFunction", {}),
        (URL_CALLER, "lambda:InvokeFunction", {"lambda:InvokedViaFunctionUrl": "false"}),
        # A URL whose auth type is NONE would not carry the caller's identity.
        (URL_CALLER, "lambda:InvokeFunctionUrl", {"lambda:FunctionUrlAuthType": "NONE"}),
        # Another account's role, even through the URL.
        (OTHER_CALLER, "lambda:InvokeFunctionUrl", {"lambda:FunctionUrlAuthType": "AWS_IAM"}),
        (OTHER_CALLER, "lambda:InvokeFunction", {"lambda:InvokedViaFunctionUrl": "true"}),
    ],
)
def test_a_cross_account_caller_cannot_invoke_any_other_way(
    layout_synth: Synth,
    iam_session: IamSession,
    caller: str,
    action: str,
    context: dict[str, str],
) -> None:
    template = layout_synth.templates[PROD]
    assert _invoke(iam_session, template, caller, action, context) != "Allowed"


def test_the_signer_policy_names_only_the_configured_caller(layout_synth: Synth) -> None:
    policy = signer_function_policy(layout_synth.templates[PROD])
    assert {s["Principal"]["AWS"] for s in policy["Statement"]} == {URL_CALLER}
