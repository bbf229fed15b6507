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

import requests
from aws_lambda_powertools import Logger
from jwcrypto import jwk as jose_jwk
from jwcrypto import jwt as jose_jwt

from jwtkeys import names, servicenow
from jwtkeys.client.invokers import LocalInvoker
from jwtkeys.client.token_client import TokenClient
from jwtkeys.clock import SimulatedClock
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keeper.service import KeeperService
from jwtkeys.keys.algorithms import ALGORITHMS
from jwtkeys.metrics_catalog import KEEPER_SERVICE, SIGNER_SERVICE
from jwtkeys.observability import MetricsRecorder
from jwtkeys.signer.service import SignService
from jwtkeys.verify.token import verify_token
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator
from jwtkeys_tools.local.servicenow_setup import (
    CLIENT_ID,
    CLIENT_SECRET,
    INTEGRATION_PASSWORD,
    INTEGRATION_USER,
    SUBJECT,
    configure_servicenow,
)
from jwtkeys_tools.local.stack import LocalKeysetConfig, LocalStack

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


def run_demo(out: Path | None) -> int:
    """Run the whole narrative; exit code 0 only when every step passed."""
    clock = SimulatedClock(start=float(int(time.time())))
    with LocalAws() as aws, ServiceNowEmulator(clock) as servicenow:
        # The services build their own clients from the environment, as on Lambda.
        os.environ.update(aws.env())
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        log_path = (out / "functions.log") if out is not None else Path(os.devnull)
        with log_path.open("w") as function_output:
            demo = Demo(aws, servicenow, clock, function_output)
            _narrative(demo)
        if out is not None:
            _write_artifacts(demo, out)
            print(f"artifacts in {out}/ (the functions' logs and metrics in functions.log)")
    failed = [step for step in demo.steps if not step.ok]
    print(f"\n{len(demo.steps) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _narrative(demo: Demo) -> None:
    clock = demo.clock
    with demo.step("start the local AWS endpoint and the ServiceNow emulator") as detail:
        servicenow_env = demo.set_up_servicenow()
        detail.append(f"AWS at {demo.aws.endpoint_url}, ServiceNow at {demo.servicenow.url}")
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
        ),
        clock,
    )
    stack.create_bucket()
    keeper: KeeperService = stack.keeper_service(
        trust_factory=servicenow.trust_target,
        metrics=demo.metrics(KEEPER_SERVICE),
        logger=demo.logger(KEEPER_SERVICE),
    )
    signer = stack.sign_service(
        metrics=demo.metrics(SIGNER_SERVICE), logger=demo.logger(SIGNER_SERVICE)
    )
    state: dict[str, Any] = {}

    def tick(action: dict[str, Any] | None = None) -> dict[str, Any]:
        summary = keeper.handle(action or {"action": "tick"})
        demo.record_publications(stack)
        return summary

    with demo.step(
        "bootstrap: first key published and trusted, then activated; standby key ready"
    ) as detail:
        summary = tick()
        check(len(summary["created"]) == 2, f"expected two keys, got {summary['created']}")
        check(summary["promoted"] == [summary["created"][0]], "the first key was not activated")
        served = {key["kid"] for key in demo.served_jwks(stack)["keys"]}
        check(served == set(summary["created"]), f"served {served}")
        maps = {row["kid"] for row in demo.servicenow.rows("jwt_verifier_map")}
        check(maps == served, f"ServiceNow trusts {maps}, JWKS has {served}")
        state["first"] = summary["current_kid"]
        state["bootstrapped_at"] = clock.now()
        state["second"] = summary["next_kid"]
        detail.append(
            f"current {summary['current_kid'][:10]}..., next {summary['next_kid'][:10]}..."
        )

    with demo.step(
        "sign through the function (direct invoke) and exchange at ServiceNow"
    ) as detail:
        record = demo.sign(stack, _direct(signer))
        demo.verify_independently(record.token, demo.served_jwks(stack))
        response = demo.exchange(record)
        check(response.status_code == 200, f"ServiceNow answered {response.status_code}")
        state["access_token"] = response.json()["access_token"]
        detail.append(f"kid {record.kid[:10]}..., ServiceNow issued an access token")

    with demo.step("sign through the Function URL entry (IAM caller with its own rule)") as detail:
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
        answer = signer.handle(event)
        check(answer["statusCode"] == 200, f"status {answer['statusCode']}")
        record = demo.sign(stack, lambda: json.loads(answer["body"]))
        demo.verify_independently(record.token, demo.served_jwks(stack))
        check(demo.exchange(record).status_code == 200, "ServiceNow refused the token")
        refused = signer.handle(
            {**event, "body": json.dumps({"subject": "root@example.com", "audience": CLIENT_ID})}
        )
        check(refused["statusCode"] == 403, "a subject outside the caller's rule was not refused")
        detail.append("200 for its own subject, 403 for another")

    with demo.step(
        "sign through the client SDK (TokenClient caches until shortly before expiry)"
    ) as detail:
        client = TokenClient(LocalInvoker(signer), clock=clock)
        first = client.get_token(SUBJECT, CLIENT_ID, ttl_seconds=600)
        again = client.get_token(SUBJECT, CLIENT_ID, ttl_seconds=600)
        check(first.jti == again.jti, "the second request was not served from the cache")
        record = demo.sign(
            stack,
            lambda: {
                "token": first.token,
                "kid": first.kid,
                "alg": first.alg,
                "expires_at": first.expires_at,
            },
        )
        demo.verify_independently(record.token, demo.served_jwks(stack))
        check(demo.exchange(record).status_code == 200, "ServiceNow refused the token")
        detail.append("one token for two requests")

    with demo.step("rotation: the standby key is promoted after the rotation period") as detail:
        due_at = state["bootstrapped_at"] + DEMO_POLICY.rotation_period
        index = 0
        while clock.now() + DEMO_POLICY.tick_interval < due_at:
            clock.advance(DEMO_POLICY.tick_interval)
            index += 1
            if index % 2 == 0:
                demo.sign(stack, _direct(signer))
            summary = tick()
            check(not summary["promoted"], "promoted before the rotation period ended")
        clock.advance(due_at - clock.now())
        # Just before the due tick: a long token from the old key, kept unexchanged.
        held = demo.sign(stack, _direct(signer, ttl=DEMO_POLICY.max_token_ttl))
        state["held"] = held
        before = demo.key_states(stack)
        summary = tick()
        check(summary["promoted"] == [state["second"]], f"promoted {summary['promoted']}")
        check(before.get(state["first"]) == "current", "the first key was not current before")
        promoted_at = clock.now()
        check(promoted_at is not None, "no promotion happened")
        states = demo.key_states(stack)
        check(states[state["first"]] == "previous", f"first key is {states[state['first']]}")
        check(states[state["second"]] == "current", "the standby key is not current")
        served = {key["kid"] for key in demo.served_jwks(stack)["keys"]}
        check(state["first"] in served, "the previous key left the JWKS at promotion")
        detail.append(f"promoted {state['second'][:10]}... after {DEMO_POLICY.rotation_period} s")

    with demo.step(
        "the signer's cached key signs once more (previous), and it still verifies"
    ) as detail:
        record = demo.sign(stack, _direct(signer))
        check(record.signed_while == "previous", f"signed while {record.signed_while}")
        demo.verify_independently(record.token, demo.served_jwks(stack))
        check(
            demo.exchange(record).status_code == 200,
            "ServiceNow refused a token of the previous key",
        )
        clock.advance(DEMO_POLICY.signer_cache_ttl)
        fresh = demo.sign(stack, _direct(signer))
        check(
            fresh.kid == state["second"],
            "after its cache TTL the signer did not move to the new key",
        )
        check(demo.exchange(fresh).status_code == 200, "ServiceNow refused the new key's token")
        detail.append("old and new key accepted side by side")

    with demo.step("a token signed before the rotation is still accepted after it") as detail:
        held = state["held"]
        check(held.kid == state["first"], "the held token is not from the old key")
        demo.verify_independently(held.token, demo.served_jwks(stack))
        check(demo.exchange(held).status_code == 200, "ServiceNow refused the old key's token")
        detail.append(f"expires at {held.expires_at}, exchanged at {int(clock.now())}")

    with demo.step(
        "the old key is retired after its grace, untrusted, and deletion is scheduled"
    ) as detail:
        retired_at = 0.0
        while not retired_at and clock.now() < promoted_at + 2 * DEMO_POLICY.grace:
            clock.advance(DEMO_POLICY.tick_interval)
            demo.sign(stack, _direct(signer))
            summary = tick()
            if state["first"] in summary["retired"]:
                retired_at = clock.now()
        check(retired_at > 0, "the previous key was never retired")
        check(retired_at >= promoted_at + DEMO_POLICY.grace, "retired before its grace ended")
        served = {key["kid"] for key in demo.served_jwks(stack)["keys"]}
        check(state["first"] not in served, "the retired key is still served")
        maps = {row["kid"] for row in demo.servicenow.rows("jwt_verifier_map")}
        check(state["first"] not in maps and maps == served, f"ServiceNow trusts {maps}")
        arn = next(
            entry["arn"]
            for entry in json.loads(
                stack.s3.get_object(Bucket=stack.config.bucket, Key="state/registry.json")[
                    "Body"
                ].read()
            )["disposed"]
            if entry["kid"] == state["first"]
        )
        key_state = stack.kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"]
        check(key_state == "PendingDeletion", f"KMS key is {key_state}")
        detail.append(
            f"retired {int(retired_at - promoted_at)} s after promotion; KMS: {key_state}"
        )

    with demo.step(
        "tokens of the retired key had all expired (+ skew) before it left the JWKS"
    ) as detail:
        old = [t for t in demo.tokens if t.kid == state["first"]]
        check(bool(old), "no tokens of the first key")
        latest = max(t.expires_at for t in old)
        check(latest + DEMO_POLICY.clock_skew <= retired_at, f"a token lived until {latest}")
        detail.append(f"{len(old)} tokens, the last expired at {latest}")

    with demo.step(
        "emergency: revoke the current key; the standby key takes over at once"
    ) as detail:
        victim = str(keeper.handle({"action": "tick"})["current_kid"])
        demo.record_publications(stack)
        doomed = demo.sign(stack, _direct(signer))
        clock.advance(1)  # the revocation comes after that signature, not at the same instant
        summary = tick({"action": "revoke", "kid": victim})
        check(summary["revoked"] == [victim], f"revoked {summary['revoked']}")
        check(len(summary["promoted"]) == 1, "no standby key was promoted")
        for record in demo.tokens:
            if record.kid == victim:
                record.key_revoked = True
        served = {key["kid"] for key in demo.served_jwks(stack)["keys"]}
        check(victim not in served, "the revoked key is still served")
        check(demo.exchange(doomed).status_code == 401, "ServiceNow accepted a revoked key's token")
        sessions = requests.get(
            f"{demo.servicenow.url}/api/now/table/sys_user",
            headers={"Authorization": f"Bearer {state['access_token']}"},
            verify=demo.servicenow.ca_bundle,
            timeout=10,
        )
        check(sessions.status_code == 401, "sessions minted before the revocation still work")
        clock.advance(DEMO_POLICY.signer_cache_ttl)
        after = demo.sign(stack, _direct(signer))
        check(after.kid == summary["current_kid"], "the signer did not move to the promoted key")
        demo.verify_independently(after.token, demo.served_jwks(stack))
        check(demo.exchange(after).status_code == 200, "ServiceNow refused the new current key")
        detail.append(f"revoked {victim[:10]}..., sessions ended, signing continues")

    with demo.step(
        "tour: every other algorithm signs through KMS and verifies from its JWKS"
    ) as detail:
        toured = []
        for name, algorithm in ALGORITHMS.items():
            if name == DEMO_POLICY.algorithm:
                continue
            tour = LocalStack(
                demo.aws,
                LocalKeysetConfig(
                    keyset=f"tour-{name.lower()}",
                    issuer=CLIENT_ID,
                    policy=replace(
                        DEMO_POLICY, algorithm=name, key_spec=algorithm.default_key_spec
                    ),
                    allowed_subjects=("*@example.com",),
                    allowed_audiences=(CLIENT_ID,),
                ),
                clock,
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
        detail.append(", ".join(toured))

    with demo.step("read back: the artifacts satisfy I1 and I2") as detail:
        problems = check_artifacts(
            demo.history, [t.to_json() for t in demo.tokens], DEMO_POLICY.clock_skew
        )
        check(not problems, "; ".join(problems[:5]))
        check(demo.history[-1]["jwks"] == demo.served_jwks(stack), "history ends elsewhere")
        detail.append(f"{len(demo.tokens)} tokens against {len(demo.history)} published documents")


def check_artifacts(
    history: list[dict[str, Any]], tokens: list[dict[str, Any]], skew: int
) -> list[str]:
    """I1: each token's kid was served when it was signed. I2: it stayed served until the
    token expired (+ skew), unless its key was revoked."""
    problems = []

    def served_at(moment: float) -> set[str]:
        current: set[str] = set()
        for entry in history:
            if entry["at"] <= moment:
                current = {key["kid"] for key in entry["jwks"]["keys"]}
        return current

    for token in tokens:
        if token["kid"] not in served_at(token["issued_at"]):
            problems.append(
                f"I1: {token['kid']} signed at {token['issued_at']} before it was served"
            )
        if token["key_revoked"]:
            continue
        for entry in history:
            during = token["issued_at"] <= entry["at"] < token["expires_at"] + skew
            if during and token["kid"] not in {key["kid"] for key in entry["jwks"]["keys"]}:
                problems.append(f"I2: {token['kid']} left the JWKS at {entry['at']}")
    return problems


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
