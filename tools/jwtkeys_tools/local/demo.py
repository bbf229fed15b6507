"""`jwtkeys demo`: a whole key lifecycle, locally, on a simulated clock.

It starts the local AWS endpoint and the ServiceNow emulator, deploys one keyset as
the CDK stack would (same settings, same services), and walks through bootstrap,
signing (both entry shapes of the signing function and the client SDK), a rotation,
a retirement, an emergency revocation and a tour of every algorithm, checking each
step with an independent JOSE library and ServiceNow's token endpoint. The clock
starts at the real time; every time in the artifacts is a Unix time on that clock.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import jwt
import requests
from aws_lambda_powertools import Logger
from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto import jwk as jose_jwk
from jwcrypto import jwt as jose_jwt

from jwtkeys import names, servicenow
from jwtkeys.client.invokers import LocalInvoker
from jwtkeys.client.token_client import TokenClient
from jwtkeys.clock import SimulatedClock
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keeper.service import KeeperService
from jwtkeys.keys.algorithms import ALGORITHMS
from jwtkeys.metrics_catalog import AUTHORIZER_SERVICE, KEEPER_SERVICE, SIGNER_SERVICE
from jwtkeys.observability import MetricsRecorder
from jwtkeys.signer.service import SignService
from jwtkeys.verify.authorizer import Authorizer, AuthorizerSettings, parse_routes
from jwtkeys.verify.token import verify_token
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.invariants import check_artifacts
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator
from jwtkeys_tools.local.servicenow_emulator.profiles import InstanceProfile
from jwtkeys_tools.local.servicenow_setup import (
    CLIENT_ID,
    CLIENT_SECRET,
    INTEGRATION_PASSWORD,
    INTEGRATION_USER,
    SUBJECT,
    configure_servicenow,
)
from jwtkeys_tools.local.stack import LocalKeysetConfig, LocalStack
from jwtkeys_tools.timeline.model import Timeline, build_timeline, tokens_per_hour
from jwtkeys_tools.timeline.sources import keeper_histories
from jwtkeys_tools.timeline.svg import write_svg

CALLER = "arn:aws:iam::123456789012:role/orders-service"

# Short but safe timings (the policy validates them): a rotation every two hours.
DEMO_POLICY = RotationPolicy(
    rotation_period=7200,
    prepublish_window=1200,
    grace=1800,
    max_token_ttl=900,
    clock_skew=300,
    jwks_max_age=300,
    signer_cache_ttl=60,
    tick_interval=300,
    deletion_window_days=7,
)


@dataclass
class Step:
    name: str
    ok: bool
    detail: str


@dataclass
class TokenRecord:
    """One keyset token, as tokens.json records it."""

    token: str
    kid: str
    alg: str
    issued_at: int
    expires_at: int
    signed_while: str
    servicenow_exchange: str = "skipped"
    key_revoked: bool = False
    exchanged: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "kid": self.kid,
            "alg": self.alg,
            "issuer": CLIENT_ID,
            "audience": CLIENT_ID,
            "subject": SUBJECT,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "signed_while": self.signed_while,
            "servicenow_exchange": self.servicenow_exchange,
            "key_revoked": self.key_revoked,
        }


class StepFailed(Exception):
    """A demo check did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


@dataclass
class Demo:
    aws: LocalAws
    servicenow: ServiceNowEmulator
    clock: SimulatedClock
    # What the functions log and emit (JSON logs, EMF) goes here, not to the console.
    function_output: TextIO
    steps: list[Step] = field(default_factory=list)
    tokens: list[TokenRecord] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    # kid -> when ServiceNow was first seen trusting it (after a keeper tick).
    trusted_at: dict[str, float] = field(default_factory=dict)
    stack: LocalStack | None = None
    _seen_versions: set[str] = field(default_factory=set)

    # -- framing -------------------------------------------------------------------------

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """Run one step; its detail lines are collected; any exception fails the step."""
        details: list[str] = []
        try:
            yield details
        except Exception as error:  # a failed step is reported, and the demo goes on
            message = f"{type(error).__name__}: {error}"
            if not isinstance(error, StepFailed):
                message += " | " + traceback.format_exc(limit=3).replace("\n", " ")
            self._record(Step(name, False, message))
        else:
            self._record(Step(name, True, "; ".join(details)))

    def _record(self, step: Step) -> None:
        self.steps.append(step)
        mark = "PASS" if step.ok else "FAIL"
        print(f"[{mark}] {step.name}" + (f" - {step.detail}" if step.detail else ""), flush=True)

    def metrics(self, service: str, keyset: str = "demo") -> MetricsRecorder:
        def write(line: str) -> None:
            self.function_output.write(line + "\n")

        return MetricsRecorder(service, keyset, write=write)

    def logger(self, service: str) -> Logger:
        return Logger(service=service, stream=self.function_output)

    # -- set-up --------------------------------------------------------------------------

    def set_up_servicenow(self) -> dict[str, str]:
        return configure_servicenow(self.servicenow, self.aws.client("secretsmanager"), "demo")

    # -- observing -----------------------------------------------------------------------

    def record_publications(self, stack: LocalStack) -> None:
        """New versions of the JWKS object, stamped with the (simulated) time of the write.

        The bucket is versioned, so every document the keeper wrote is still there; the
        clock does not move inside a tick, so the write happened at `now`.
        """
        versions = stack.s3.list_object_versions(
            Bucket=stack.config.bucket, Prefix=names.JWKS_OBJECT_KEY
        )
        # S3 lists a key's versions newest first; LastModified has only second precision,
        # so two writes of one tick can only be ordered by that listing.
        new = [v for v in versions.get("Versions", []) if v["VersionId"] not in self._seen_versions]
        for version in reversed(new):
            self._seen_versions.add(version["VersionId"])
            body = stack.s3.get_object(
                Bucket=stack.config.bucket,
                Key=names.JWKS_OBJECT_KEY,
                VersionId=version["VersionId"],
            )["Body"].read()
            self.history.append({"at": int(self.clock.now()), "jwks": json.loads(body)})

    def record_trust(self) -> None:
        """The kids ServiceNow trusts now; the first sighting of each is its trusted-at."""
        for row in self.servicenow.rows("jwt_verifier_map"):
            self.trusted_at.setdefault(str(row["kid"]), self.clock.now())

    def timeline(self) -> Timeline:
        """The run's key timeline: the keeper's registry and tags, ServiceNow, the tokens."""
        if self.stack is None:
            raise StepFailed("no keyset was deployed")
        keeper = self.stack.keeper_service(
            metrics=self.metrics(KEEPER_SERVICE), logger=self.logger(KEEPER_SERVICE)
        )
        histories = keeper_histories(keeper.keeper, self.stack.kms, self.trusted_at)
        issued = tokens_per_hour((t.kid, t.issued_at) for t in self.tokens)
        start = min((h.created_at for h in histories), default=self.clock.now())
        # A run that stopped at its bootstrap never moved the clock: a timeline needs a span.
        end = max(self.clock.now(), start + 1)
        return build_timeline("demo", histories, start=start, end=end, tokens=issued)

    def key_states(self, stack: LocalStack) -> dict[str, str]:
        """kid -> state tag, for the keyset's registered keys."""
        registry = json.loads(
            stack.s3.get_object(Bucket=stack.config.bucket, Key="state/registry.json")[
                "Body"
            ].read()
        )
        states = {}
        for entry in registry["keys"]:
            tags = {
                t["TagKey"]: t["TagValue"]
                for t in stack.kms.list_resource_tags(KeyId=entry["arn"])["Tags"]
            }
            states[entry["kid"]] = tags.get(names.TAG_STATE, "?")
        return states

    def served_jwks(self, stack: LocalStack) -> dict[str, Any]:
        response = requests.get(stack.jwks_url, timeout=5)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    def verify_independently(self, token: str, jwks: dict[str, Any]) -> dict[str, Any]:
        """jwtkeys' strict verifier and jwcrypto must both accept the token."""
        claims = verify_token(
            token, jwks, issuer=CLIENT_ID, audience=CLIENT_ID, now=self.clock.now(), leeway=0
        )
        independent = jose_jwt.JWT(
            jwt=token, key=jose_jwk.JWKSet.from_json(json.dumps(jwks)), check_claims=False
        )
        check(json.loads(independent.claims)["jti"] == claims["jti"], "jwcrypto saw other claims")
        return claims

    def exchange(self, record: TokenRecord) -> requests.Response:
        """The documented JWT bearer exchange at ServiceNow's token endpoint."""
        response = requests.post(
            f"{self.servicenow.url}/oauth_token.do",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": record.token,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
            verify=self.servicenow.ca_bundle,
            timeout=10,
        )
        record.exchanged = True
        record.servicenow_exchange = "ok" if response.status_code == 200 else "refused"
        return response

    def sign(self, stack: LocalStack, signer: Callable[[], dict[str, Any]]) -> TokenRecord:
        issued = signer()
        state = self.key_states(stack).get(issued["kid"], "?")
        record = TokenRecord(
            token=issued["token"],
            kid=issued["kid"],
            alg=issued["alg"],
            issued_at=int(self.clock.now()),
            expires_at=int(issued["expires_at"]),
            signed_while=state,
        )
        self.tokens.append(record)
        return record


def _direct(service: SignService, ttl: int = 600) -> Callable[[], dict[str, Any]]:
    return lambda: service.handle({"subject": SUBJECT, "audience": CLIENT_ID, "ttl_seconds": ttl})


@dataclass
class DemoState:
    """What one step leaves for the next: the deployment and the moments and keys seen."""

    stack: LocalStack
    keeper: KeeperService
    signer: SignService
    first_kid: str = ""
    second_kid: str = ""
    bootstrapped_at: float = 0.0
    promoted_at: float = 0.0
    retired_at: float = 0.0
    access_token: str = ""
    # A long token from the first key signed just before the rotation, exchanged after it.
    held: TokenRecord | None = None

    def tick(self, demo: Demo, action: dict[str, Any] | None = None) -> dict[str, Any]:
        """One keeper invocation; the JWKS versions it wrote join the history."""
        summary: dict[str, Any] = self.keeper.handle(action or {"action": "tick"})
        # Nobody but the keeper touches the demo's bucket: a finding is a false alarm.
        check("tampering" not in summary, f"keeper reported tampering: {summary.get('tampering')}")
        demo.record_publications(self.stack)
        demo.record_trust()
        return summary

    def served(self, demo: Demo) -> set[str]:
        return {key["kid"] for key in demo.served_jwks(self.stack)["keys"]}


# A step does its work and its checks (raising StepFailed) and returns its detail line.
DemoStep = Callable[[Demo, DemoState], str]


def run_demo(out: Path | None, profile: InstanceProfile | None = None) -> int:
    """Run the whole narrative (on an instance of `profile`'s shape); exit code 0 only
    when every step passed."""
    clock = SimulatedClock(start=float(int(time.time())))
    # The services build their own clients from the environment, as on Lambda; the
    # caller's environment is given back afterwards.
    with (
        LocalAws() as aws,
        ServiceNowEmulator(clock, profile=profile) as emulator,
        _environ_updated(aws.env()),
    ):
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        log_path = (out / "functions.log") if out is not None else Path(os.devnull)
        deployments: list[LocalStack] = []
        aws.deployment_hooks.append(deployments.append)
        with log_path.open("w") as function_output:
            demo = Demo(aws, emulator, clock, function_output)
            _narrative(demo)
        if out is not None:
            _write_artifacts(demo, out)
            _write_iam_requests(aws, deployments, out)
            print(f"artifacts in {out}/ (the functions' logs and metrics in functions.log)")
    failed = [step for step in demo.steps if not step.ok]
    print(f"\n{len(demo.steps) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


@contextmanager
def _environ_updated(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _narrative(demo: Demo) -> None:
    """The steps in order; without a deployment (the first step failed) none can run."""
    state: DemoState | None = None
    with demo.step("start the local AWS endpoint and the ServiceNow emulator") as detail:
        state = deploy(demo)
        detail.append(f"AWS at {demo.aws.endpoint_url}, ServiceNow at {demo.servicenow.url}")
    if state is None:
        return
    for name, run in STEPS:
        with demo.step(name) as detail:
            detail.append(run(demo, state))
        if run is bootstrap and not demo.steps[-1].ok:
            # Every later step signs with, rotates or revokes the bootstrapped keys: with
            # none they would only repeat the bootstrap's failure in other words.
            print("the later steps need a bootstrapped keyset: not run")
            return


def deploy(demo: Demo) -> DemoState:
    """ServiceNow configured for the keyset, then the keyset deployed as the stack would."""
    servicenow_env = demo.set_up_servicenow()
    stack = LocalStack(
        demo.aws,
        LocalKeysetConfig(
            keyset="demo",
            issuer=CLIENT_ID,
            policy=DEMO_POLICY,
            allowed_subjects=("*@example.com",),
            allowed_audiences=(CLIENT_ID,),
            caller_rules={CALLER: {"subjects": [SUBJECT], "audiences": [CLIENT_ID]}},
            servicenow_env=servicenow_env,
            # The demo signs with direct invokes too (the stage setting, turned on).
            direct_invoke_claims={},
        ),
        demo.clock,
    )
    stack.create_bucket()
    demo.stack = stack
    keeper = stack.keeper_service(
        trust_factory=servicenow.trust_target,
        metrics=demo.metrics(KEEPER_SERVICE),
        logger=demo.logger(KEEPER_SERVICE),
    )
    signer = stack.sign_service(
        metrics=demo.metrics(SIGNER_SERVICE), logger=demo.logger(SIGNER_SERVICE)
    )
    return DemoState(stack, keeper, signer)


def bootstrap(demo: Demo, state: DemoState) -> str:
    summary = state.tick(demo)
    check("trust_error" not in summary, f"ServiceNow refused: {summary.get('trust_error')}")
    check(len(summary["created"]) == 2, f"expected two keys, got {summary['created']}")
    check(summary["promoted"] == [summary["created"][0]], "the first key was not activated")
    served = state.served(demo)
    check(served == set(summary["created"]), f"served {served}")
    maps = {row["kid"] for row in demo.servicenow.rows("jwt_verifier_map")}
    check(maps == served, f"ServiceNow trusts {maps}, JWKS has {served}")
    state.first_kid = summary["current_kid"]
    state.second_kid = summary["next_kid"]
    state.bootstrapped_at = demo.clock.now()
    return f"current {summary['current_kid'][:10]}..., next {summary['next_kid'][:10]}..."


def sign_direct(demo: Demo, state: DemoState) -> str:
    record = demo.sign(state.stack, _direct(state.signer))
    demo.verify_independently(record.token, demo.served_jwks(state.stack))
    response = demo.exchange(record)
    check(response.status_code == 200, f"ServiceNow answered {response.status_code}")
    state.access_token = response.json()["access_token"]
    return f"kid {record.kid[:10]}..., ServiceNow issued an access token"


def sign_function_url(demo: Demo, state: DemoState) -> str:
    body = json.dumps({"subject": SUBJECT, "audience": CLIENT_ID, "ttl_seconds": 600})
    event = {
        "version": "2.0",
        "requestContext": {
            "http": {"method": "POST"},
            "authorizer": {"iam": {"userArn": CALLER}},
        },
        "body": body,
        "isBase64Encoded": False,
    }
    answer = state.signer.handle(event)
    check(answer["statusCode"] == 200, f"status {answer['statusCode']}")
    record = demo.sign(state.stack, lambda: json.loads(answer["body"]))
    demo.verify_independently(record.token, demo.served_jwks(state.stack))
    check(demo.exchange(record).status_code == 200, "ServiceNow refused the token")
    refused = state.signer.handle(
        {**event, "body": json.dumps({"subject": "root@example.com", "audience": CLIENT_ID})}
    )
    check(refused["statusCode"] == 403, "a subject outside the caller's rule was not refused")
    return "200 for its own subject, 403 for another"


def sign_client_sdk(demo: Demo, state: DemoState) -> str:
    client = TokenClient(LocalInvoker(state.signer), clock=demo.clock)
    first = client.get_token(SUBJECT, CLIENT_ID, ttl_seconds=600)
    again = client.get_token(SUBJECT, CLIENT_ID, ttl_seconds=600)
    check(first.jti == again.jti, "the second request was not served from the cache")
    record = demo.sign(
        state.stack,
        lambda: {
            "token": first.token,
            "kid": first.kid,
            "alg": first.alg,
            "expires_at": first.expires_at,
        },
    )
    demo.verify_independently(record.token, demo.served_jwks(state.stack))
    check(demo.exchange(record).status_code == 200, "ServiceNow refused the token")
    return "one token for two requests"


def authorize_api_requests(demo: Demo, state: DemoState) -> str:
    """The API Gateway authorizer in front of an API, as its function would run it."""
    settings = AuthorizerSettings(
        keyset=state.stack.config.keyset,
        issuer=CLIENT_ID,
        jwks_url=state.stack.jwks_url,
        routes=parse_routes({"GET /orders": {"audience": CLIENT_ID}}, "routes"),
        max_lifetime=state.stack.config.policy.max_token_ttl,
    )
    authorizer = Authorizer.create(
        settings.to_environ(),
        demo.clock,
        metrics=demo.metrics(AUTHORIZER_SERVICE),
        logger=demo.logger(AUTHORIZER_SERVICE),
    )
    record = demo.sign(state.stack, _direct(state.signer))
    # The same claims signed by a key the JWKS does not hold, under the real kid.
    claims = jwt.decode(record.token, options={"verify_signature": False})
    outsider = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, outsider, algorithm="RS256", headers={"kid": record.kid})
    method_arn = "arn:aws:execute-api:us-east-1:123456789012:orders/prod/GET/orders"

    def http(token: str) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"}
        event = {"version": "2.0", "type": "REQUEST", "routeKey": "GET /orders", "headers": headers}
        return authorizer.handle(event)

    def rest(token: str) -> dict[str, Any]:
        event = {"type": "TOKEN", "authorizationToken": f"Bearer {token}", "methodArn": method_arn}
        return authorizer.handle(event)

    check(http(record.token)["isAuthorized"] is True, "HTTP API: the signed token was refused")
    allowed = rest(record.token)["policyDocument"]["Statement"][0]
    check(allowed["Effect"] == "Allow", "REST API: the signed token was refused")
    refused_http, refused_rest = http(forged), rest(forged)
    check(refused_http == {"isAuthorized": False}, "HTTP API: the forged token was accepted")
    denied = refused_rest["policyDocument"]["Statement"][0]
    check(denied["Effect"] == "Deny", "REST API: the forged token was accepted")
    check(forged not in json.dumps([refused_http, refused_rest]), "a refusal echoed the token")
    return "HTTP API and REST: the function's token allowed; one from an outside key denied"


def rotate(demo: Demo, state: DemoState) -> str:
    clock = demo.clock
    due_at = state.bootstrapped_at + DEMO_POLICY.rotation_period
    index = 0
    while clock.now() + DEMO_POLICY.tick_interval < due_at:
        clock.advance(DEMO_POLICY.tick_interval)
        index += 1
        if index % 2 == 0:
            demo.sign(state.stack, _direct(state.signer))
        summary = state.tick(demo)
        check(not summary["promoted"], "promoted before the rotation period ended")
    clock.advance(due_at - clock.now())
    # Just before the due tick: a long token from the old key, kept unexchanged.
    state.held = demo.sign(state.stack, _direct(state.signer, ttl=DEMO_POLICY.max_token_ttl))
    before = demo.key_states(state.stack)
    summary = state.tick(demo)
    check(summary["promoted"] == [state.second_kid], f"promoted {summary['promoted']}")
    check(before.get(state.first_kid) == "current", "the first key was not current before")
    state.promoted_at = clock.now()
    states = demo.key_states(state.stack)
    check(states[state.first_kid] == "previous", f"first key is {states[state.first_kid]}")
    check(states[state.second_kid] == "current", "the standby key is not current")
    check(state.first_kid in state.served(demo), "the previous key left the JWKS at promotion")
    return f"promoted {state.second_kid[:10]}... after {DEMO_POLICY.rotation_period} s"


def sign_with_cached_previous_key(demo: Demo, state: DemoState) -> str:
    record = demo.sign(state.stack, _direct(state.signer))
    check(record.signed_while == "previous", f"signed while {record.signed_while}")
    demo.verify_independently(record.token, demo.served_jwks(state.stack))
    check(
        demo.exchange(record).status_code == 200,
        "ServiceNow refused a token of the previous key",
    )
    demo.clock.advance(DEMO_POLICY.signer_cache_ttl)
    fresh = demo.sign(state.stack, _direct(state.signer))
    check(
        fresh.kid == state.second_kid,
        "after its cache TTL the signer did not move to the new key",
    )
    check(demo.exchange(fresh).status_code == 200, "ServiceNow refused the new key's token")
    return "old and new key accepted side by side"


def exchange_held_token(demo: Demo, state: DemoState) -> str:
    held = state.held
    if held is None:
        raise StepFailed("no token was held across the rotation")
    check(held.kid == state.first_kid, "the held token is not from the old key")
    demo.verify_independently(held.token, demo.served_jwks(state.stack))
    check(demo.exchange(held).status_code == 200, "ServiceNow refused the old key's token")
    return f"expires at {held.expires_at}, exchanged at {int(demo.clock.now())}"


def retire(demo: Demo, state: DemoState) -> str:
    clock = demo.clock
    while not state.retired_at and clock.now() < state.promoted_at + 2 * DEMO_POLICY.grace:
        clock.advance(DEMO_POLICY.tick_interval)
        demo.sign(state.stack, _direct(state.signer))
        summary = state.tick(demo)
        if state.first_kid in summary["retired"]:
            state.retired_at = clock.now()
    check(state.retired_at > 0, "the previous key was never retired")
    check(
        state.retired_at >= state.promoted_at + DEMO_POLICY.grace,
        "retired before its grace ended",
    )
    served = state.served(demo)
    check(state.first_kid not in served, "the retired key is still served")
    maps = {row["kid"] for row in demo.servicenow.rows("jwt_verifier_map")}
    check(state.first_kid not in maps and maps == served, f"ServiceNow trusts {maps}")
    registry = json.loads(
        state.stack.s3.get_object(Bucket=state.stack.config.bucket, Key="state/registry.json")[
            "Body"
        ].read()
    )
    arn = next(entry["arn"] for entry in registry["disposed"] if entry["kid"] == state.first_kid)
    key_state = state.stack.kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"]
    check(key_state == "PendingDeletion", f"KMS key is {key_state}")
    return (
        f"retired {int(state.retired_at - state.promoted_at)} s after promotion; KMS: {key_state}"
    )


def retired_tokens_expired_first(demo: Demo, state: DemoState) -> str:
    old = [t for t in demo.tokens if t.kid == state.first_kid]
    check(bool(old), "no tokens of the first key")
    latest = max(t.expires_at for t in old)
    check(latest + DEMO_POLICY.clock_skew <= state.retired_at, f"a token lived until {latest}")
    return f"{len(old)} tokens, the last expired at {latest}"


def revoke(demo: Demo, state: DemoState) -> str:
    victim = str(state.tick(demo)["current_kid"])
    doomed = demo.sign(state.stack, _direct(state.signer))
    demo.clock.advance(1)  # the revocation comes after that signature, not at the same instant
    summary = state.tick(demo, {"action": "revoke", "kid": victim})
    check(summary["revoked"] == [victim], f"revoked {summary['revoked']}")
    check(len(summary["promoted"]) == 1, "no standby key was promoted")
    for record in demo.tokens:
        if record.kid == victim:
            record.key_revoked = True
    check(victim not in state.served(demo), "the revoked key is still served")
    check(demo.exchange(doomed).status_code == 401, "ServiceNow accepted a revoked key's token")
    sessions = requests.get(
        f"{demo.servicenow.url}/api/now/table/sys_user",
        headers={"Authorization": f"Bearer {state.access_token}"},
        verify=demo.servicenow.ca_bundle,
        timeout=10,
    )
    check(sessions.status_code == 401, "sessions minted before the revocation still work")
    demo.clock.advance(DEMO_POLICY.signer_cache_ttl)
    after = demo.sign(state.stack, _direct(state.signer))
    check(after.kid == summary["current_kid"], "the signer did not move to the promoted key")
    demo.verify_independently(after.token, demo.served_jwks(state.stack))
    check(demo.exchange(after).status_code == 200, "ServiceNow refused the new current key")
    return f"revoked {victim[:10]}..., sessions ended, signing continues"


def tour_algorithms(demo: Demo, state: DemoState) -> str:
    toured = []
    for name, algorithm in ALGORITHMS.items():
        if name == DEMO_POLICY.algorithm:
            continue
        tour = LocalStack(
            demo.aws,
            LocalKeysetConfig(
                keyset=f"tour-{name.lower()}",
                issuer=CLIENT_ID,
                policy=replace(DEMO_POLICY, algorithm=name, key_spec=algorithm.default_key_spec),
                allowed_subjects=("*@example.com",),
                allowed_audiences=(CLIENT_ID,),
                direct_invoke_claims={},
            ),
            demo.clock,
        )
        tour.create_bucket()
        tour.keeper_service(
            metrics=demo.metrics(KEEPER_SERVICE, tour.config.keyset),
            logger=demo.logger(KEEPER_SERVICE),
        ).handle({"action": "tick"})
        issued = tour.sign_service(
            metrics=demo.metrics(SIGNER_SERVICE, tour.config.keyset),
            logger=demo.logger(SIGNER_SERVICE),
        ).handle({"subject": SUBJECT, "audience": CLIENT_ID})
        check(issued["alg"] == name, f"{name}: signed as {issued['alg']}")
        demo.verify_independently(issued["token"], demo.served_jwks(tour))
        toured.append(name)
    return ", ".join(toured)


def read_back(demo: Demo, state: DemoState) -> str:
    problems = check_artifacts(
        demo.history, [t.to_json() for t in demo.tokens], DEMO_POLICY.clock_skew
    )
    check(not problems, "; ".join(problems[:5]))
    check(demo.history[-1]["jwks"] == demo.served_jwks(state.stack), "history ends elsewhere")
    return f"{len(demo.tokens)} tokens against {len(demo.history)} published documents"


# The narrative, in order. Each step assumes the ones before it ran (it reads their state).
STEPS: list[tuple[str, DemoStep]] = [
    ("bootstrap: first key published and trusted, then activated; standby key ready", bootstrap),
    ("sign through the function (direct invoke) and exchange at ServiceNow", sign_direct),
    ("sign through the Function URL entry (IAM caller with its own rule)", sign_function_url),
    (
        "sign through the client SDK (TokenClient caches until shortly before expiry)",
        sign_client_sdk,
    ),
    (
        "API Gateway authorizer: the function's token passes, an outside key's is refused",
        authorize_api_requests,
    ),
    ("rotation: the standby key is promoted after the rotation period", rotate),
    (
        "the signer's cached key signs once more (previous), and it still verifies",
        sign_with_cached_previous_key,
    ),
    ("a token signed before the rotation is still accepted after it", exchange_held_token),
    ("the old key is retired after its grace, untrusted, and deletion is scheduled", retire),
    (
        "tokens of the retired key had all expired (+ skew) before it left the JWKS",
        retired_tokens_expired_first,
    ),
    ("emergency: revoke the current key; the standby key takes over at once", revoke),
    ("tour: every other algorithm signs through KMS and verifies from its JWKS", tour_algorithms),
    ("read back: the artifacts satisfy I1 and I2", read_back),
]


def _write_iam_requests(aws: LocalAws, deployments: list[LocalStack], out: Path) -> None:
    """What each function role asked of AWS, as IAM would evaluate it, and the deployments.

    `iam-requests.jsonl`: one request per line (role, action, resource ARN, request
    context, the key policy in force); `deployments.json`: each deployment's cdk.json
    stage and local names, so the requests can be checked against the synthesized
    policies (the end-to-end tests do).
    """
    with (out / "iam-requests.jsonl").open("w") as lines:
        for request in aws.iam_requests():
            lines.write(json.dumps(request, sort_keys=True) + "\n")
    described = {stack.label: stack.deployment() for stack in deployments}
    (out / "deployments.json").write_text(json.dumps(list(described.values()), indent=2))


def _write_artifacts(demo: Demo, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    bucket_stack_jwks = demo.history[-1]["jwks"] if demo.history else {"keys": []}
    (out / "jwks.json").write_text(json.dumps(bucket_stack_jwks, indent=2))
    (out / "jwks-history.json").write_text(json.dumps(demo.history, indent=2))
    (out / "tokens.json").write_text(json.dumps([t.to_json() for t in demo.tokens], indent=2))
    tables = {}
    for table in ("sys_certificate", "jwt_verifier_map", "oauth_jwt"):
        response = requests.get(
            f"{demo.servicenow.url}/api/now/table/{table}",
            auth=(INTEGRATION_USER, INTEGRATION_PASSWORD),
            verify=demo.servicenow.ca_bundle,
            timeout=10,
        )
        tables[table] = response.json()["result"] if response.status_code == 200 else []
    (out / "servicenow.json").write_text(json.dumps(tables, indent=2))
    summary = {
        "ok": all(step.ok for step in demo.steps),
        "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in demo.steps],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if demo.stack is not None:
        timeline = demo.timeline()
        (out / "timeline.json").write_text(timeline.to_json())
        write_svg(timeline, out / "timeline.svg")
