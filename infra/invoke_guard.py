"""The statement that makes caller rules hold when the signer shares its callers' account.

Within one account an identity policy alone can allow `lambda:InvokeFunction`, and a
function's resource policy cannot deny. A direct invoke carries no caller identity, and a
direct invoker can hand the function a forged Function URL event naming any caller. Only
an SCP or a permissions boundary can close that path: this statement denies every invoke
of the signer that does not come through its Function URL (IAM auth), except for the
stage's trusted direct-invoke principals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

# What docs/ ships: the same statement, for a function ARN and exemptions to fill in.
PLACEHOLDER_FUNCTION_ARN = "arn:aws:lambda:REGION:ACCOUNT_ID:function:SIGNER_FUNCTION_NAME"
DOCS_FILE = "docs/signer-invoke-guard.json"
SID = "JwtkeysSignerOnlyThroughItsFunctionUrl"


def invoke_guard_statement(
    function_arn: str, exempt_principals: Sequence[str] = ()
) -> dict[str, Any]:
    """Deny lambda:InvokeFunction on the signer unless lambda:InvokedViaFunctionUrl is true."""
    condition: dict[str, Any] = {
        # IfExists: a direct invoke may carry the key as false or not at all; both are denied.
        "BoolIfExists": {"lambda:InvokedViaFunctionUrl": "false"},
    }
    if exempt_principals:
        # The stage's direct-invoke principals: trusted with the keyset-wide allowlists.
        condition["ArnNotLike"] = {"aws:PrincipalArn": sorted(exempt_principals)}
    return {
        "Sid": SID,
        "Effect": "Deny",
        # Both qualified and unqualified names of the function (versions and aliases).
        "Action": "lambda:InvokeFunction",
        "Resource": [function_arn, f"{function_arn}:*"],
        "Condition": condition,
    }


def invoke_guard_document(function_arn: str, exempt_principals: Sequence[str] = ()) -> str:
    """A whole policy document holding the statement, as docs/ ships it."""
    document = {
        "Version": "2012-10-17",
        "Statement": [invoke_guard_statement(function_arn, exempt_principals)],
    }
    return json.dumps(document, indent=2) + "\n"
