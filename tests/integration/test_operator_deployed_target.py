"""Operator commands find a deployed keyset through its keeper function's configuration."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from jwtkeys_tools.cli import main
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LocalStack

TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def lambda_handler(event, context):\n    return {}\n")
    return buffer.getvalue()


def test_status_reads_the_keeper_functions_settings(
    stack: LocalStack, local_aws_env: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a bootstrapped keyset and a keeper function configured as the stack does
    summary = stack.keeper_service().handle({"action": "tick"})
    role = local_aws_env.client("iam").create_role(
        RoleName="keeper", AssumeRolePolicyDocument=json.dumps(TRUST_POLICY)
    )["Role"]["Arn"]
    local_aws_env.client("lambda").create_function(
        FunctionName="jwtkeys-test-keeper",
        Runtime="python3.13",
        Role=role,
        Handler="handler.lambda_handler",
        Code={"ZipFile": _zip()},
        Environment={"Variables": stack.keeper_env()},
    )
    capsys.readouterr()
    # When an operator asks for the status of that function's keyset
    assert main(["status", "--json", "--keeper-function", "jwtkeys-test-keeper"]) == 0
    # Then they see its keys, read with their own credentials
    rows = json.loads(capsys.readouterr().out)
    assert {row["kid"] for row in rows} == {summary["current_kid"], summary["next_kid"]}
    assert all(row["trusted"] is None for row in rows)  # no ServiceNow on this keyset


def test_an_unknown_keeper_function_is_one_line_not_a_traceback(
    local_aws_env: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--keeper-function", "no-such-function"]) == 1
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1
