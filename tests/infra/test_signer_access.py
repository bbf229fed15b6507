"""Who can reach the signer how, per layout: the template holds what the docs promise.

Same account: the stack emits the SCP / permissions-boundary statement that denies direct
invokes, and synth warns that caller rules are only as strong as it. Dedicated signer
account: callers elsewhere reach the function only through resource-policy statements that
carry lambda:InvokedViaFunctionUrl, and the stack refuses to deploy into a caller's account.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from infra.invoke_guard import (
    DOCS_FILE,
    PLACEHOLDER_FUNCTION_ARN,
    invoke_guard_document,
    invoke_guard_statement,
)
from tests.infra.conftest import (
    DEV,
    DIRECT_CALLER,
    PROD,
    PROJECT_ROOT,
    Synth,
    Template,
    assertion_context,
    logical_id_starting,
    resources,
    synthesize,
)

# Callers of the dedicated-account example, all outside the signer's account.
PAYMENTS = "arn:aws:iam::444455556666:role/teams/payments-api"
ORDERS = "arn:aws:iam::777788889999:role/orders"
RULE = {"subjects": ["svc-*"], "audiences": ["jwtkeys-prod-client-id"]}


@pytest.fixture(scope="module")
def dedicated(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The prod stage (dedicated signer account) with two callers in other accounts."""
    context = copy.deepcopy(assertion_context())
    context["jwtkeys"]["stacks"]["prod"]["function_url_callers"] = {PAYMENTS: RULE, ORDERS: RULE}
    synth = synthesize(context, tmp_path_factory.mktemp("cdk.out.dedicated"))
    return synth.templates[PROD]


def _signer_permissions(template: Template) -> list[dict[str, Any]]:
    signer = logical_id_starting(template, "AWS::Lambda::Function", "SignerFunction")
    return [
        resource["Properties"]
        for resource in resources(template, "AWS::Lambda::Permission").values()
        if resource["Properties"]["FunctionName"] == {"Fn::GetAtt": [signer, "Arn"]}
    ]


def _rendered_with_placeholder(template: Template, output: str) -> Any:
    """An output built with Fn::Join, the signer's ARN replaced by the docs' placeholder."""
    signer = logical_id_starting(template, "AWS::Lambda::Function", "SignerFunction")
    separator, parts = template["Outputs"][output]["Value"]["Fn::Join"]
    text = separator.join(
        PLACEHOLDER_FUNCTION_ARN if part == {"Fn::GetAtt": [signer, "Arn"]} else part
        for part in parts
    )
    return json.loads(text)


def _warnings(synth: Synth, stack: str) -> list[str]:
    artifact = json.loads((synth.outdir / "manifest.json").read_text())["artifacts"][stack]
    # Newer CDK versions write the metadata beside the manifest.
    metadata = artifact.get("metadata") or json.loads(
        (synth.outdir / artifact["additionalMetadataFile"]).read_text()
    )
    return [
        str(entry["data"])
        for entries in metadata.values()
        for entry in entries
        if entry["type"] == "aws:cdk:warning"
    ]


def test_same_account_stage_outputs_the_invoke_guard_statement(dev: Template) -> None:
    # Given the dev stage (same account, one trusted direct-invoke principal)
    # Then its output is the guard statement for its own signer, the principal exempt
    statement = _rendered_with_placeholder(dev, "SignerInvokeGuardStatement")
    assert statement == invoke_guard_statement(PLACEHOLDER_FUNCTION_ARN, [DIRECT_CALLER])
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Condition"]["BoolIfExists"] == {"lambda:InvokedViaFunctionUrl": "false"}


def test_the_docs_ship_the_same_statement() -> None:
    shipped = (PROJECT_ROOT / DOCS_FILE).read_text()
    assert shipped == invoke_guard_document(PLACEHOLDER_FUNCTION_ARN)


def test_synth_warns_that_caller_rules_are_only_as_strong_as_the_statement(synth: Synth) -> None:
    (warning,) = [w for w in _warnings(synth, DEV) if "SignerInvokeGuardStatement" in w]
    assert "only as strong as" in warning
    assert DOCS_FILE in warning
    assert not [w for w in _warnings(synth, PROD) if "SignerInvokeGuardStatement" in w]


def test_dedicated_stage_needs_no_guard_statement(prod: Template) -> None:
    assert "SignerInvokeGuardStatement" not in prod["Outputs"]


def test_dedicated_callers_reach_the_signer_only_through_its_function_url(
    dedicated: Template,
) -> None:
    permissions = _signer_permissions(dedicated)
    # Two statements per caller, and nothing else: no direct-invoke grant at all
    assert sorted((p["Principal"], p["Action"]) for p in permissions) == sorted(
        (caller, action)
        for caller in (PAYMENTS, ORDERS)
        for action in ("lambda:InvokeFunction", "lambda:InvokeFunctionUrl")
    )
    for permission in permissions:
        if permission["Action"] == "lambda:InvokeFunction":
            # Without it the caller could invoke directly and forge any caller's event.
            assert permission["InvokedViaFunctionUrl"] is True
        else:
            assert permission["FunctionUrlAuthType"] == "AWS_IAM"


def test_dedicated_stack_refuses_to_deploy_into_a_callers_account(dedicated: Template) -> None:
    (rule,) = [r for lid, r in dedicated["Rules"].items() if lid.startswith("Signer")]
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {
        "Fn::Not": [{"Fn::Contains": [["444455556666", "777788889999"], {"Ref": "AWS::AccountId"}]}]
    }


def test_deploy_guide_names_the_layout_and_the_statement() -> None:
    guide = (PROJECT_ROOT / "docs" / "deploy.md").read_text()
    assert "dedicated_signer_account" in guide
    assert "SignerInvokeGuardStatement" in guide
    assert "lambda:InvokedViaFunctionUrl" in guide
    assert Path(DOCS_FILE).name in guide
