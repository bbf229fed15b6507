"""The signing function's handler, loaded as Lambda would, against the local endpoint."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
from aws_lambda_powertools import Logger
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwcrypto import jwk as jose_jwk
from jwcrypto import jwt as jose_jwt

from jwtkeys import metrics_catalog as catalog
from jwtkeys import names
from jwtkeys.errors import ConfigurationError, InvalidRequest, PolicyViolation, RequestRefused
from jwtkeys.signer.service import SignService
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LocalStack

from ..lambda_fixtures import LambdaContext, emitted_metrics, load_handler

CALLER = "arn:aws:iam::123456789012:role/orders"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def signer(stack: LocalStack, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A bootstrapped keyset and a cold-started signing handler."""
    stack.config.caller_rules = {CALLER: {"subjects": ["svc-orders"], "audiences": ["client-test"]}}
    stack.config.direct_invoke_claims = {"role": ["reader", "writer"]}
    stack.keeper_service().handle({"action": "tick"})
    environ = {**local_aws.env(), **stack.signer_env()}
    environ |= stack.role_environ(stack.config.signer_role_arn)
    return load_handler("sign", environ, monkeypatch)


def _jwks(stack: LocalStack) -> jose_jwk.JWKSet:
    return jose_jwk.JWKSet.from_json(requests.get(stack.jwks_url, timeout=5).text)


def _claims(token: str, jwks: jose_jwk.JWKSet) -> dict[str, Any]:
    return dict(json.loads(jose_jwt.JWT(jwt=token, key=jwks, check_claims=False).claims))


def _url_event(
    body: object, caller: str | None = CALLER, *, encode: bool = False
) -> dict[str, Any]:
    raw = json.dumps(body) if not isinstance(body, str) else body
    event: dict[str, Any] = {
        "version": "2.0",
        "rawPath": "/",
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "body": base64.b64encode(raw.encode()).decode() if encode else raw,
        "isBase64Encoded": encode,
    }
    if caller is not None:
        event["requestContext"]["authorizer"] = {"iam": {"userArn": caller}}
    return event


def test_direct_invoke_issues_a_token_that_verifies_independently(
    signer: ModuleType, stack: LocalStack
) -> None:
    response = signer.lambda_handler(
        {
            "subject": "svc-orders",
            "audience": "client-test",
            "claims": {"role": "reader"},
            "ttl_seconds": 120,
        },
        LambdaContext(),
    )
    assert set(response) == {"token", "kid", "alg", "jti", "expires_at"}
    claims = _claims(response["token"], _jwks(stack))
    assert claims["role"] == "reader"
    assert claims["iss"] == "client-test"
    assert claims["aud"] == "client-test"
    assert claims["exp"] - claims["iat"] == 120
    assert claims["jti"] == response["jti"]
    assert len(base64.urlsafe_b64decode(claims["jti"] + "==")) == 16


def test_function_url_applies_the_callers_rule(signer: ModuleType, stack: LocalStack) -> None:
    ok = signer.lambda_handler(
        _url_event({"subject": "svc-orders", "audience": "client-test"}, encode=True),
        LambdaContext(),
    )
    assert ok["statusCode"] == 200
    _claims(json.loads(ok["body"])["token"], _jwks(stack))
    denied = signer.lambda_handler(
        _url_event({"subject": "svc-billing", "audience": "client-test"}), LambdaContext()
    )
    assert denied["statusCode"] == 403
    assert json.loads(denied["body"])["error"]["code"] == "PolicyViolation"
    stranger = signer.lambda_handler(
        _url_event(
            {"subject": "svc-orders", "audience": "client-test"}, caller="arn:aws:iam::1:role/x"
        ),
        LambdaContext(),
    )
    assert stranger["statusCode"] == 403
    bad = signer.lambda_handler(_url_event("{not json"), LambdaContext())
    assert bad["statusCode"] == 400
    assert json.loads(bad["body"])["error"]["code"] == "InvalidRequest"


@pytest.mark.parametrize(
    ("event", "error", "reason"),
    [
        ({"subject": "root", "audience": "client-test"}, PolicyViolation, "subject_not_allowed"),
        ({"subject": "svc-a", "audience": "other"}, PolicyViolation, "audience_not_allowed"),
        (
            {"subject": "svc-a", "audience": "client-test", "ttl_seconds": 3601},
            PolicyViolation,
            "ttl_out_of_range",
        ),
        (
            {"subject": "svc-a", "audience": "client-test", "claims": {"exp": 1}},
            PolicyViolation,
            "reserved_claim",
        ),
        (
            {"subject": "svc-a", "audience": "client-test", "claims": {"Iss": 1}},
            PolicyViolation,
            "reserved_claim",
        ),
        (
            {"subject": "svc-a", "audience": "client-test", "claims": {"kid": "x"}},
            PolicyViolation,
            "reserved_claim",
        ),
        ({"subject": "svc-a"}, InvalidRequest, "bad_audience"),
        (
            {"subject": "svc-a", "audience": "client-test", "alg": "none"},
            InvalidRequest,
            "unknown_field",
        ),
        (
            {"subject": "svc-a", "audience": "client-test", "claims": "x"},
            InvalidRequest,
            "bad_claims",
        ),
    ],
)
def test_refusals_raise_named_errors_and_sign_nothing(
    signer: ModuleType,
    local_aws: LocalAws,
    event: dict[str, Any],
    error: type[RequestRefused],
    reason: str,
) -> None:
    local_aws.reset_calls()
    with pytest.raises(error) as refused:
        signer.lambda_handler(event, LambdaContext())
    # Lambda reports the exception's class name as errorType.
    assert type(refused.value).__name__ in {"InvalidRequest", "PolicyViolation"}
    assert refused.value.reason == reason
    assert ("kms", "Sign") not in local_aws.calls()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
bad_requests = st.one_of(
    json_values.filter(lambda value: not isinstance(value, dict)),
    st.fixed_dictionaries({"subject": json_values, "audience": st.just("client-test")}).filter(
        lambda r: not isinstance(r["subject"], str) or not r["subject"].startswith("svc-")
    ),
    st.fixed_dictionaries({"subject": st.just("svc-a"), "audience": st.text(max_size=30)}).filter(
        lambda r: r["audience"] != "client-test"
    ),
    st.fixed_dictionaries(
        {
            "subject": st.just("svc-a"),
            "audience": st.just("client-test"),
            "claims": st.dictionaries(
                st.sampled_from(
                    [
                        "iss",
                        "sub",
                        "aud",
                        "exp",
                        "nbf",
                        "iat",
                        "jti",
                        "ISS",
                        "\uff4a\uff54\uff49",
                        "a\u200bud",
                        "kid",
                        "alg",
                    ]
                ),
                json_values,
                min_size=1,
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "subject": st.just("svc-a"),
            "audience": st.just("client-test"),
            "ttl_seconds": json_values,
        }
    ).filter(
        lambda r: (
            r["ttl_seconds"] is not None  # null means "the default TTL"
            and not (
                isinstance(r["ttl_seconds"], int)
                and not isinstance(r["ttl_seconds"], bool)
                and 1 <= r["ttl_seconds"] <= 3600
            )
        )
    ),
    st.fixed_dictionaries(
        {
            "subject": st.just("svc-a"),
            "audience": st.just("client-test"),
            "claims": st.just({"big": "x" * 5000}),
        }
    ),
    st.fixed_dictionaries(
        {
            "subject": st.sampled_from(
                ["svc-a\u202e", "svc-a\x00", " svc-a", "svc\u2010a", "svc-a\ud800", ""]
            ),
            "audience": st.just("client-test"),
        }
    ),
    st.builds(
        lambda depth: {
            "subject": "svc-a",
            "audience": "client-test",
            "claims": {"x": _nest(depth)},
        },
        st.integers(8, 60),
    ),
)


def _nest(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_generated_bad_requests_are_all_refused_without_a_kms_sign(
    signer: ModuleType, local_aws: LocalAws
) -> None:
    local_aws.reset_calls()
    refused = 0

    @settings(
        max_examples=600,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(request=bad_requests)
    def run(request: object) -> None:
        nonlocal refused
        with pytest.raises(RequestRefused):
            signer.service.handle(request)
        refused += 1

    run()
    assert refused >= 500
    assert ("kms", "Sign") not in local_aws.calls()


def test_the_signer_recovers_when_the_alias_moves_and_the_old_key_is_disabled(
    signer: ModuleType, stack: LocalStack, local_aws: LocalAws
) -> None:
    first = signer.lambda_handler({"subject": "svc-a", "audience": "client-test"}, LambdaContext())
    # Promote the standby key (forced) and disable the old key under the signer's cache.
    summary = stack.keeper_service().handle({"action": "rotate", "force": True})
    old_arn = next(
        arn
        for arn in (k["KeyArn"] for k in stack.kms.list_keys()["Keys"])
        if {
            t["TagKey"]: t["TagValue"] for t in stack.kms.list_resource_tags(KeyId=arn)["Tags"]
        }.get(names.TAG_KID)
        == first["kid"]
    )
    stack.kms.disable_key(KeyId=old_arn)
    local_aws.reset_calls()
    second = signer.lambda_handler({"subject": "svc-a", "audience": "client-test"}, LambdaContext())
    assert second["kid"] == summary["current_kid"] != first["kid"]
    # One failed Sign, a re-resolve (DescribeKey + ListResourceTags), one Sign.
    assert [op for _, op in local_aws.calls()] == [
        "Sign",
        "DescribeKey",
        "ListResourceTags",
        "Sign",
    ]
    _claims(second["token"], _jwks(stack))


def test_eight_threads_of_250_tokens_all_verify_with_distinct_jti(
    signer: ModuleType, stack: LocalStack
) -> None:
    tokens: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            mine = [
                signer.lambda_handler(
                    {"subject": "svc-a", "audience": "client-test"}, LambdaContext()
                )["token"]
                for _ in range(250)
            ]
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
            return
        with lock:
            tokens.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(tokens) == 2000
    jwks = _jwks(stack)
    jtis = {_claims(token, jwks)["jti"] for token in tokens}
    assert len(jtis) == 2000


def test_steady_state_is_one_kms_call_per_token(signer: ModuleType, local_aws: LocalAws) -> None:
    signer.lambda_handler({"subject": "svc-a", "audience": "client-test"}, LambdaContext())
    local_aws.reset_calls()
    for _ in range(20):
        signer.lambda_handler({"subject": "svc-a", "audience": "client-test"}, LambdaContext())
    assert local_aws.calls() == [("kms", "Sign")] * 20


def test_emf_output_matches_the_catalog(
    signer: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    signer.lambda_handler({"subject": "svc-a", "audience": "client-test"}, LambdaContext())
    with pytest.raises(PolicyViolation):
        signer.lambda_handler({"subject": "root", "audience": "client-test"}, LambdaContext())
    output = capsys.readouterr().out
    emitted = emitted_metrics(output)
    for spec in (
        catalog.TOKENS_ISSUED,
        catalog.TOKENS_ISSUED_BY_KID,
        catalog.SIGN_LATENCY_MS,
        catalog.SIGN_REQUESTS_REJECTED,
        catalog.SIGN_REQUESTS_REJECTED_BY_REASON,
    ):
        assert (spec.name, frozenset(spec.dimensions)) in emitted, spec
    # Units and the namespace, as written in the catalog.
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "jwtkeys"
            for metric in directive["Metrics"]:
                spec = next(s for s in catalog.ALL_METRICS if s.name == metric["Name"])
                assert metric["Unit"] == spec.unit
        assert document["service"] == catalog.SIGNER_SERVICE
        assert document["keyset"] == "test"


def test_logs_carry_caller_kid_and_jti_never_the_token_or_claim_values(stack: LocalStack) -> None:
    stack.config.direct_invoke_claims = {"secret_value": True}
    stack.keeper_service().handle({"action": "tick"})
    stream = io.StringIO()
    service = SignService.create(
        stack.signer_env(),
        stack.kms,
        stack.clock,
        # A logger of its own: Powertools shares handlers between loggers of one service.
        logger=Logger(service="jwtkeys-signer-log-test", stream=stream),
    )
    issued = service.handle(
        {"subject": "svc-a", "audience": "client-test", "claims": {"secret_value": "hunter2"}}
    )
    with pytest.raises(PolicyViolation):
        service.handle({"subject": "root", "audience": "client-test"})
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    issued_log = next(r for r in records if r["message"] == "token issued")
    assert issued_log["kid"] == issued["kid"]
    assert issued_log["jti"] == issued["jti"]
    assert issued_log["caller"] == "direct-invoke"
    assert issued_log["sub"] == "svc-a"
    refused_log = next(r for r in records if r["message"] == "sign request refused")
    assert refused_log["reason"] == "subject_not_allowed"
    assert issued["token"] not in stream.getvalue()
    assert "hunter2" not in stream.getvalue()


def test_an_invocation_that_records_no_metric_writes_no_warning(signer: ModuleType) -> None:
    # pytest turns warnings into errors: flushing an empty recorder must stay silent.
    signer.service._metrics.flush()


def test_a_bad_setting_fails_at_cold_start_naming_it(
    stack: LocalStack, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**local_aws.env(), **stack.signer_env(), names.ENV_ALLOWED_AUDIENCES: "[]"}
    with pytest.raises(ConfigurationError, match=names.ENV_ALLOWED_AUDIENCES):
        load_handler("sign", env, monkeypatch)
    env = {**local_aws.env(), **stack.signer_env(), names.ENV_POLICY: json.dumps({"grace": 10})}
    with pytest.raises(ConfigurationError, match="grace >="):
        load_handler("sign", env, monkeypatch)


def _kept_by_lambda_filter(line: str, function_level: str) -> bool:
    """Lambda's log-level filter on one JSON stdout line (AWS Lambda developer guide,
    "Log-level filtering"): a line whose `level` is missing or invalid counts as INFO,
    and only lines at or above the function's application log level are kept."""
    levels = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
    level = str(json.loads(line).get("level", "INFO")).upper()
    if level not in levels:
        level = "INFO"
    return levels.index(level) >= levels.index(function_level)


@pytest.mark.parametrize("function_level", ["WARN", "ERROR", "FATAL"])
def test_raising_the_log_level_keeps_every_metric(
    stack: LocalStack,
    local_aws: LocalAws,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    function_level: str,
) -> None:
    # Given a signer whose application log level an operator raised above INFO
    stack.keeper_service().handle({"action": "tick"})
    environ = {**local_aws.env(), **stack.signer_env(), "AWS_LAMBDA_LOG_LEVEL": function_level}
    signer = load_handler("sign", environ, monkeypatch)
    capsys.readouterr()

    # When it issues a token and refuses a request
    signer.lambda_handler({"subject": "svc-a", "audience": "client-test"}, LambdaContext())
    with pytest.raises(PolicyViolation):
        signer.lambda_handler({"subject": "root", "audience": "client-test"}, LambdaContext())
    lines = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]

    # Then every EMF document survives Lambda's filter at that level
    assert lines
    assert all(_kept_by_lambda_filter(line, function_level) for line in lines)
    kept = emitted_metrics("\n".join(lines))
    assert (catalog.TOKENS_ISSUED.name, frozenset(catalog.TOKENS_ISSUED.dimensions)) in kept
    # (Without a level of their own they would all count as INFO and be dropped.)
    unlevelled = [
        json.dumps({k: v for k, v in json.loads(x).items() if k != "level"}) for x in lines
    ]
    assert not any(_kept_by_lambda_filter(line, function_level) for line in unlevelled)


def test_a_cold_start_imports_neither_boto3_nor_s3transfer(
    stack: LocalStack, local_aws: LocalAws
) -> None:
    # botocore alone makes the KMS client: boto3 would import s3transfer and
    # multiprocessing at every cold start, and a token needs neither.
    handler = PROJECT_ROOT / "functions" / "sign" / "handler.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('handler', {str(handler)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(sorted(m for m in ('boto3', 's3transfer', 'multiprocessing') if m in sys.modules))"
    )
    env = {**os.environ, **local_aws.env(), **stack.signer_env()}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
