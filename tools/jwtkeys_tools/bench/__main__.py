"""`make bench`: signing, cold start, verification, keeper and client figures, one run.

Every ratio compares two figures measured side by side in this run, against the same
local endpoint, so machine noise hits both sides alike. Writes bench/results.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import requests
from aws_lambda_powertools import Logger

from infra.layers import runtime_interpreter
from jwtkeys.client.invokers import LocalInvoker
from jwtkeys.client.token_client import TokenClient
from jwtkeys.clock import SimulatedClock
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.metrics_catalog import KEEPER_SERVICE, SIGNER_SERVICE
from jwtkeys.names import current_alias
from jwtkeys.observability import MetricsRecorder
from jwtkeys.signer.service import SignService
from jwtkeys.verify.jwks_verifier import JwksVerifier, VerifierCounters
from jwtkeys.verify.token import verify_token
from jwtkeys_tools.bench.lambda_layout import lambda_filesystem
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LocalKeysetConfig, LocalStack

# tools/jwtkeys_tools/bench/__main__.py -> the project root.
ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "bench" / "results.json"
# Medians of ~10 ms samples whose spread is milliseconds: many samples keep the
# difference of the two medians (the overhead) from drowning in noise.
SIGN_SAMPLES = 1500
# Fresh interpreters vary by tens of ms run to run: the median of many, interleaved.
COLD_RUNS = 15
VERIFY_SECONDS = 2.0
_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def _quiet(_: str) -> None:
    return None


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _stack(aws: LocalAws, clock: SimulatedClock, keyset: str) -> LocalStack:
    stack = LocalStack(
        aws,
        LocalKeysetConfig(
            keyset=keyset,
            issuer="bench-client",
            policy=RotationPolicy(),
            allowed_audiences=("bench-client",),
            direct_invoke_claims={},
        ),
        clock,
    )
    stack.create_bucket()
    return stack


def _sign_service(stack: LocalStack) -> SignService:
    """The signing function's service, its logs and metrics discarded (still produced)."""
    return stack.sign_service(
        metrics=MetricsRecorder(SIGNER_SERVICE, stack.config.keyset, write=_quiet),
        logger=Logger(service=SIGNER_SERVICE, stream=_DEVNULL),
    )


def bench_signing(aws: LocalAws, stack: LocalStack) -> dict[str, float]:
    """Handler p50/p99 against a bare boto3 KMS Sign, interleaved, same endpoint."""
    service = _sign_service(stack)
    kms = aws.client("kms")
    arn = kms.describe_key(KeyId=current_alias(stack.config.keyset))["KeyMetadata"]["Arn"]
    digest = b"\x01" * 32
    request = {"subject": "svc", "audience": "bench-client"}
    for _ in range(30):  # warm both paths (connections, caches)
        service.handle(request)
        kms.sign(
            KeyId=arn,
            Message=digest,
            MessageType="DIGEST",
            SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256",
        )
    handler, raw = [], []
    for _ in range(SIGN_SAMPLES):
        started = time.perf_counter()
        kms.sign(
            KeyId=arn,
            Message=digest,
            MessageType="DIGEST",
            SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256",
        )
        raw.append(time.perf_counter() - started)
        started = time.perf_counter()
        service.handle(request)
        handler.append(time.perf_counter() - started)
    aws.reset_calls()
    for _ in range(100):
        service.handle(request)
    calls = len(aws.calls())
    sign_p50, raw_p50 = statistics.median(handler), statistics.median(raw)
    return {
        "sign_p50_ms": sign_p50 * 1000,
        "sign_p99_ms": _percentile(handler, 0.99) * 1000,
        "raw_kms_sign_p50_ms": raw_p50 * 1000,
        "sign_overhead_ratio": sign_p50 / raw_p50,
        "sign_overhead_us": (sign_p50 - raw_p50) * 1e6,
        "aws_calls_per_token": calls / 100,
    }


_COLD_SIGN = """
import importlib.util, resource, sys, time
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
elapsed = (time.perf_counter() - started) * 1000
print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
_COLD_BOTO3 = """
import time
started = time.perf_counter()
import boto3
boto3.client("kms")
print((time.perf_counter() - started) * 1000, 0)
"""


def _fresh_interpreter(
    code: str, env: dict[str, str], *args: str, python: list[str] | None = None
) -> tuple[float, float]:
    command = [*(python or [sys.executable]), "-c", code, *args]
    output = subprocess.run(
        command, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(output[0]), float(output[1])


def bench_cold_start(aws: LocalAws, stack: LocalStack) -> dict[str, float]:
    """A fresh interpreter importing the sign handler vs importing boto3 + one KMS client.

    Interleaved: this venv with its bytecode caches written (the figure of earlier runs),
    and Lambda's (`_lambda`): the runtime's Python over read-only copies of the staged
    layers with the bytecode they ship, and without it (`_no_bytecode`: a pycache prefix
    pointing at an empty folder hides the shipped pycs, as a layer without them would).
    """
    env = {**os.environ, **aws.env(), **stack.signer_env()}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # Lambda layers ship compiled bytecode too
    handler_path = str(ROOT / "functions" / "sign" / "handler.py")
    _fresh_interpreter(_COLD_SIGN, env, handler_path)  # writes the bytecode caches once
    interpreter = str(runtime_interpreter()[0])
    runs: dict[str, list[float]] = {}
    rss: list[float] = []
    with lambda_filesystem() as layout:
        lambda_env = layout.environ(env)
        handler = str(layout.handler)
        # -S: Lambda's interpreter has no site-packages of this machine (nor its .pth files).
        runtime = [interpreter, "-S", "-s"]
        settings: dict[str, tuple[str, dict[str, str], list[str], list[str]]] = {
            "sign_cold_import_ms": (_COLD_SIGN, env, [handler_path], [sys.executable]),
            "boto3_import_ms": (_COLD_BOTO3, env, [], [sys.executable]),
            "sign_cold_import_lambda_ms": (_COLD_SIGN, lambda_env, [handler], runtime),
            "boto3_import_lambda_ms": (_COLD_BOTO3, lambda_env, [], runtime),
            "sign_cold_import_lambda_no_bytecode_ms": (
                _COLD_SIGN,
                lambda_env,
                [handler],
                [*runtime, *layout.without_bytecode()],
            ),
        }
        for _ in range(COLD_RUNS):  # interleaved, so all see the same machine
            for name, (code, run_env, args, python) in settings.items():
                elapsed, peak = _fresh_interpreter(code, run_env, *args, python=python)
                runs.setdefault(name, []).append(elapsed)
                if name == "sign_cold_import_ms":
                    rss.append(peak)
    results = {name: statistics.median(samples) for name, samples in runs.items()}
    return results | {
        "sign_cold_import_ratio": results["sign_cold_import_ms"] / results["boto3_import_ms"],
        "sign_cold_import_lambda_ratio": results["sign_cold_import_lambda_ms"]
        / results["boto3_import_lambda_ms"],
        "sign_peak_rss_mb": max(rss),
    }


def bench_verification(stack: LocalStack) -> dict[str, float]:
    """verify_token against raw PyJWT decode with a ready key object, same tokens."""
    service = _sign_service(stack)
    now = stack.clock.now()
    tokens = [
        service.handle({"subject": "svc", "audience": "bench-client"})["token"] for _ in range(50)
    ]
    jwks = requests.get(stack.jwks_url, timeout=5).json()
    keys = {key["kid"]: jwt.PyJWK(key).key for key in jwks["keys"]}
    headers = [jwt.get_unverified_header(token)["kid"] for token in tokens]

    def ours() -> None:
        for token in tokens:
            verify_token(
                token, jwks, issuer="bench-client", audience="bench-client", now=now, leeway=0
            )

    def pyjwt() -> None:
        for token, kid in zip(tokens, headers, strict=True):
            jwt.decode(
                token,
                keys[kid],
                algorithms=["RS256"],
                audience="bench-client",
                issuer="bench-client",
            )

    # The SDK as a service runs it: fetched once, then every verification on a warm cache.
    verifier = JwksVerifier(stack.jwks_url, "bench-client", "bench-client", clock=stack.clock)

    def sdk() -> None:
        for token in tokens:
            verifier.verify(token)

    ours_rate, pyjwt_rate = _interleaved_rates(ours, pyjwt, len(tokens))
    sdk_rate, sdk_pyjwt_rate = _interleaved_rates(sdk, pyjwt, len(tokens))
    return {
        "verify_per_s": ours_rate,
        "pyjwt_verify_per_s": pyjwt_rate,
        "verify_ratio": ours_rate / pyjwt_rate,
        "verifier_warm_per_s": sdk_rate,
        "verifier_warm_ratio": sdk_rate / sdk_pyjwt_rate,
    }


def bench_verifier_rotation(aws: LocalAws) -> dict[str, float]:
    """10,000 verifications by one running JwksVerifier across two forced rotations.

    The first promotes the standby the verifier already holds; the second promotes a key
    created after its copy. Fetches are counted at the verifier's hooks, by reason.
    """
    clock = SimulatedClock(time.time())
    stack = _stack(aws, clock, "bench-verifier")
    keeper = stack.keeper_service(
        metrics=MetricsRecorder(KEEPER_SERVICE, "bench-verifier", write=_quiet)
    )
    keeper.handle({"action": "tick"})
    counters = VerifierCounters()
    verifier = JwksVerifier(
        stack.jwks_url, "bench-client", "bench-client", clock=clock, metrics=counters
    )
    total, kid_changes = 10_000, 0
    request = {"subject": "svc", "audience": "bench-client"}
    token = _sign_service(stack).handle(request)["token"]
    for index in range(total):
        if index in (total // 3, 2 * total // 3):
            summary = keeper.handle({"action": "rotate", "force": True})
            kid_changes += len(summary["promoted"])
            # A fresh signer (a new container): a warm one keeps its key for its cache TTL.
            token = _sign_service(stack).handle(request)["token"]
        verifier.verify(token)
        clock.advance(0.01)  # 100 s in all: inside one max-age, so no expiry refetch
    refetches = sum(counters.refetches.values()) - counters.refetches.get("initial", 0)
    return {
        "verifier_refetches_per_10000": float(refetches),
        "verifier_unknown_kid_refetches_per_kid_change": counters.refetches.get("unknown_kid", 0)
        / kid_changes,
    }


def _interleaved_rates(
    first: Callable[[], None], second: Callable[[], None], batch: int
) -> tuple[float, float]:
    times: dict[int, list[float]] = {0: [], 1: []}
    deadline = time.perf_counter() + 2 * VERIFY_SECONDS
    while time.perf_counter() < deadline:
        for index, run in enumerate((first, second)):
            started = time.perf_counter()
            run()
            times[index].append(time.perf_counter() - started)
    return batch / statistics.median(times[0]), batch / statistics.median(times[1])


def bench_keeper(aws: LocalAws) -> dict[str, float]:
    """An idle tick with 3 keys in the keyset and 50 unrelated KMS keys in the account."""
    clock = SimulatedClock(time.time())
    stack = _stack(aws, clock, "bench-keeper")
    keeper = stack.keeper_service(
        metrics=MetricsRecorder(KEEPER_SERVICE, "bench-keeper", write=_quiet)
    )
    keeper.handle({"action": "tick"})
    clock.advance(stack.config.policy.rotation_period)
    keeper.handle({"action": "tick"})  # previous, current, next
    kms = aws.client("kms")
    for _ in range(50):
        kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    clock.advance(stack.config.policy.tick_interval)
    aws.reset_calls()
    summary = keeper.handle({"action": "tick"})
    assert summary["published_keys"] == 3, summary
    return {"keeper_idle_tick_aws_calls": float(len(aws.calls()))}


def bench_client(aws: LocalAws, stack: LocalStack) -> dict[str, float]:
    """1000 token requests for the same claims over one token lifetime."""
    service = stack.sign_service(
        metrics=MetricsRecorder(SIGNER_SERVICE, stack.config.keyset, write=_quiet)
    )
    clock = stack.clock
    assert isinstance(clock, SimulatedClock)
    client = TokenClient(LocalInvoker(service), clock=clock)
    ttl = 600
    aws.reset_calls()
    for _ in range(1000):
        client.get_token("svc", "bench-client", ttl_seconds=ttl)
        clock.advance(ttl / 1000)
    signs = sum(1 for call in aws.calls() if call == ("kms", "Sign"))
    return {"client_cached_kms_calls_per_1000": float(signs)}


def main() -> int:
    results: dict[str, Any] = {}
    with LocalAws() as aws:
        os.environ.update(aws.env())
        clock = SimulatedClock(time.time())
        stack = _stack(aws, clock, "bench")
        stack.keeper_service(metrics=MetricsRecorder(KEEPER_SERVICE, "bench", write=_quiet)).handle(
            {"action": "tick"}
        )
        results.update(bench_signing(aws, stack))
        results.update(bench_cold_start(aws, stack))
        results.update(bench_verification(stack))
        results.update(bench_keeper(aws))
        results.update(bench_verifier_rotation(aws))
        results.update(bench_client(aws, stack))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    width = max(len(name) for name in results)
    for name, value in results.items():
        print(f"{name:<{width}}  {value:12.3f}")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
