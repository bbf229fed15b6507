"""Every AWS request a function role makes locally, evaluated against the deployed policies.

The local endpoint knows which role made each request (each role has its own access
key) and records what IAM would evaluate (`LocalAws.iam_requests`). This plugin
evaluates those records with `@cloud-copilot/iam-simulate` (a Node development
dependency; `tests/iam/simulate.mjs`, one process per test session) against:

- the identity policies of the SYNTHESIZED template, built for the same keyset
  configuration the local deployment uses (one synth per configuration, cached for the
  session), with the template's references resolved to the local names;
- the template's bucket policy and secret policy for S3 and Secrets Manager requests;
- the key policy in force when the request was made, as the keeper built it at run time
  (the endpoint records it with each KMS request).

When a `LocalStack` is built, the simulation also decides whether each role may
s3:ListBucket its bucket with no prefix; the endpoint then answers a missing object with
404 or 403 as S3 would. After each test that used `local_aws`, every recorded request
must be allowed; a denial fails the test naming the call and the statements that did not
apply.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jwtkeys.errors import ConfigurationError
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LOCAL_ACCOUNT, LocalStack

ROOT = Path(__file__).resolve().parent.parent
SIMULATOR = ROOT / "tests" / "iam" / "simulate.mjs"
REGION = "us-east-1"
PARTITION = "aws"
_STAGE = "iamsim"

Policy = dict[str, Any]


class IamSimulator:
    """One `node tests/iam/simulate.mjs` process; evaluates batches of simulations."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("the IAM simulation needs Node.js on PATH")
        if not (ROOT / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir():
            raise RuntimeError(
                "the IAM simulation needs @cloud-copilot/iam-simulate: run `npm ci`"
                " (make test does) in the project root"
            )
        self._process = subprocess.Popen(
            [node, str(SIMULATOR)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()

    def evaluate(self, simulations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The simulator's answer ({"result", "why"}) for each simulation, in order."""
        stdin, stdout = self._pipes()

        def feed() -> None:
            for index, simulation in enumerate(simulations):
                stdin.write(json.dumps({"id": index, "simulation": simulation}) + "\n")
            stdin.flush()

        with self._lock:
            # Node answers while we write: feeding from another thread keeps a large batch
            # from filling both pipes at once.
            writer = threading.Thread(target=feed)
            writer.start()
            answers = [_answer(stdout.readline()) for _ in simulations]
            writer.join()
        return answers

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        return self._process.stdin, self._process.stdout

    def close(self) -> None:
        stdin, stdout = self._pipes()
        stdin.close()
        self._process.wait(timeout=10)
        stdout.close()


def _answer(line: str) -> dict[str, Any]:
    if not line:
        raise RuntimeError("the IAM simulator stopped (see its error output above)")
    answer: dict[str, Any] = json.loads(line)
    return answer


# --------------------------------------------------------------------------- templates


def synthesize(stage: Mapping[str, Any]) -> dict[str, Any]:
    """The template the CDK app synthesizes for one cdk.json stage."""
    from aws_cdk import App

    from infra.stack import build_app

    context: dict[str, Any] = copy.deepcopy(json.loads((ROOT / "cdk.json").read_text())["context"])
    context["jwtkeys"] = {"stacks": {_STAGE: dict(stage)}}
    with tempfile.TemporaryDirectory(prefix="jwtkeys-iam-synth-") as outdir:
        app = App(outdir=outdir, context=context)
        (stack,) = build_app(app)
        app.synth()
        template: dict[str, Any] = json.loads((Path(outdir) / stack.template_file).read_text())
    return template


@dataclass(frozen=True)
class DeployedPolicies:
    """The synthesized policies of one deployment, with local names filled in."""

    identity: dict[str, list[dict[str, Any]]]  # role ARN -> [{"name", "policy"}]
    bucket_policy: Policy | None
    secret_policy: Policy | None
    bucket: str
    secret_arn: str | None  # a pattern: the name, then Secrets Manager's random suffix

    def resource_policy(self, request: Mapping[str, Any]) -> Policy | None:
        if request["service"] == "kms":
            text = request.get("resource_policy")
            return json.loads(text) if text else None
        if request["service"] == "s3":
            return self.bucket_policy
        # The secret's own policy applies to the secret the pattern names.
        secret = self.secret_arn
        if request["service"] == "secretsmanager" and secret is not None:
            return self.secret_policy if fnmatch.fnmatchcase(request["resource"], secret) else None
        return None


def _local_names(template: dict[str, Any], deployment: Mapping[str, Any]) -> dict[str, str]:
    """What each reference of the template stands for locally."""
    bucket = deployment["bucket"]
    names = {
        "AWS::Partition": PARTITION,
        "AWS::Region": REGION,
        "AWS::AccountId": LOCAL_ACCOUNT,
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackName": f"jwtkeys-{_STAGE}",
    }
    for logical_id, resource in template["Resources"].items():
        kind = resource["Type"]
        if kind == "AWS::S3::Bucket" and logical_id.startswith("JwksBucket"):
            names[logical_id] = bucket
            names[f"{logical_id}.Arn"] = f"arn:{PARTITION}:s3:::{bucket}"
        elif kind == "AWS::IAM::Role" and logical_id.startswith(("SignerRole", "KeeperRole")):
            signer = logical_id.startswith("Signer")
            arn = deployment["signer_role_arn" if signer else "keeper_role_arn"]
            names[logical_id] = arn.rsplit("/", 1)[-1]
            names[f"{logical_id}.Arn"] = arn
        elif kind == "AWS::SecretsManager::Secret" and deployment["secret_name"] is not None:
            # Secrets Manager adds six random characters to the name in the ARN.
            names[logical_id] = _secret_arn_pattern(deployment["secret_name"])
        elif kind == "AWS::CloudFront::Distribution":
            names[logical_id] = "LOCALDISTRIBUTION"
    return names


def _secret_arn_pattern(name: str) -> str:
    return f"arn:{PARTITION}:secretsmanager:{REGION}:{LOCAL_ACCOUNT}:secret:{name}-??????"


def resolve(value: Any, names: Mapping[str, str]) -> Any:
    """`value` with CloudFormation references replaced by local names.

    A reference with no local meaning becomes `unresolved:<id>`, which matches nothing:
    a statement that depends on it grants nothing here, the less convenient reading.
    """
    if isinstance(value, list):
        return [resolve(item, names) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return names.get(value["Ref"], f"unresolved:{value['Ref']}")
    if set(value) == {"Fn::GetAtt"}:
        logical_id, attribute = value["Fn::GetAtt"]
        return names.get(f"{logical_id}.{attribute}", f"unresolved:{logical_id}.{attribute}")
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(resolve(part, names)) for part in parts)
    if set(value) == {"Fn::Select"}:
        index, items = value["Fn::Select"]
        return resolve(items, names)[int(index)]
    if set(value) == {"Fn::Split"}:
        separator, text = value["Fn::Split"]
        return str(resolve(text, names)).split(separator)
    return {key: resolve(item, names) for key, item in value.items()}


def deployed_policies(template: dict[str, Any], deployment: Mapping[str, Any]) -> DeployedPolicies:
    """The identity, bucket and secret policies of `template`, with `deployment`'s names."""
    names = _local_names(template, deployment)
    resources = template["Resources"]
    identity: dict[str, list[dict[str, Any]]] = {}
    bucket_policy = secret_policy = None
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Policy":
            document = resolve(properties["PolicyDocument"], names)
            for role in properties.get("Roles", []):
                role_arn = names.get(f"{role['Ref']}.Arn")
                if role_arn is not None:
                    identity.setdefault(role_arn, []).append(
                        {"name": logical_id, "policy": document}
                    )
        elif resource["Type"] == "AWS::S3::BucketPolicy":
            bucket_policy = resolve(properties["PolicyDocument"], names)
        elif resource["Type"] == "AWS::SecretsManager::ResourcePolicy":
            secret_policy = resolve(properties["ResourcePolicy"], names)
    secret = deployment["secret_name"]
    return DeployedPolicies(
        identity,
        bucket_policy,
        secret_policy,
        deployment["bucket"],
        _secret_arn_pattern(secret) if secret is not None else None,
    )


# --------------------------------------------------------------------------- session


def simulation(
    request: Mapping[str, Any],
    policies: DeployedPolicies,
    other_roles: Mapping[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The iam-simulate input for one recorded request.

    `other_roles`: identity policies of roles the template does not define (a test's
    account administrator).
    """
    role = request["role_arn"]
    return {
        "identityPolicies": policies.identity.get(role) or (other_roles or {}).get(role, []),
        "serviceControlPolicies": [],
        "resourceControlPolicies": [],
        "resourcePolicy": policies.resource_policy(request),
        "request": {
            "action": request["action"],
            "principal": request["principal"],
            "resource": {"accountId": LOCAL_ACCOUNT, "resource": request["resource"]},
            "contextVariables": request["context"],
        },
    }


def describe_denial(request: Mapping[str, Any], answer: Mapping[str, Any]) -> str:
    role = request["role_arn"].rsplit("/", 1)[-1]
    lines = [
        f"{role}: {request['service']} {request['operation']} needs {request['action']} on "
        f"{request['resource']}: {answer['result']}",
        f"  context: {json.dumps(request['context'], sort_keys=True)}",
    ]
    lines += [f"  {why}" for why in answer["why"]]
    return "\n".join(lines)


class IamSession:
    """The session's simulator and the synthesized policies of each local deployment."""

    def __init__(self) -> None:
        self.simulator = IamSimulator()
        self._templates: dict[str, dict[str, Any]] = {}  # stage (as JSON) -> template
        self.policies: dict[str, DeployedPolicies] = {}  # deployment label -> policies
        self._stacks: dict[str, LocalStack] = {}  # deployment label -> latest LocalStack
        # Deployments whose config the CDK app refuses: their requests are not evaluated,
        # only counted (deployment label -> requests), and named in the session's summary.
        self.unsimulated: set[str] = set()
        self.unsimulated_requests: Counter[str] = Counter()
        self.simulated_requests = 0
        self.denied_requests = 0
        # Roles outside the template (a test's administrator) -> their identity policies.
        self.other_roles: dict[str, list[dict[str, Any]]] = {}

    def on_deployment(self, stack: Any) -> None:
        """Learn a new LocalStack's policies and tell the endpoint its S3 list rights."""
        assert isinstance(stack, LocalStack)
        self._stacks[stack.label] = stack
        try:
            self.learn(stack.deployment())
        except ConfigurationError:
            # A config no stage could deploy (a test of the runtime's own refusal, or a
            # ServiceNow keyset without the canary the CDK app requires): there are no
            # synthesized policies to hold its requests to.
            self.policies.pop(stack.label, None)
            self.unsimulated.add(stack.label)
            return
        self.unsimulated.discard(stack.label)
        self.register(stack)

    def _relearn(self, labels: set[str]) -> None:
        """Tests may change a deployment's config after building it: follow the change.

        A config the CDK app refuses (some tests build one on purpose, to see the runtime
        refuse it too) keeps the policies the deployment was built with.
        """
        for label in labels & set(self._stacks):
            try:
                self.learn(self._stacks[label].deployment())
            except ConfigurationError:
                continue

    def learn(self, deployment: Mapping[str, Any]) -> None:
        """Synthesize (once per stage) and resolve the policies of a `LocalStack.deployment()`."""
        key = json.dumps(deployment["stage"], sort_keys=True)
        if key not in self._templates:
            self._templates[key] = synthesize(deployment["stage"])
        self.policies[deployment["label"]] = deployed_policies(self._templates[key], deployment)

    def register(self, stack: LocalStack) -> None:
        """Register `stack`'s roles with what their policies say about s3:ListBucket.

        S3 evaluates that permission, for a read of a missing object, with no s3:prefix.
        """
        policies = self.policies[stack.label]
        roles = [stack.config.signer_role_arn, stack.config.keeper_role_arn]
        bucket_arn = f"arn:{PARTITION}:s3:::{policies.bucket}"
        checks = [
            {
                "principal": _session(role),
                "role_arn": role,
                "service": "s3",
                "action": "s3:ListBucket",
                "resource": bucket_arn,
                "context": {"aws:PrincipalArn": role, "aws:PrincipalAccount": LOCAL_ACCOUNT},
            }
            for role in roles
        ]
        answers = self.simulator.evaluate([simulation(check, policies) for check in checks])
        stack.register_roles(
            {
                role: {policies.bucket: answer["result"] == "Allowed"}
                for role, answer in zip(roles, answers, strict=True)
            }
        )

    def denials(self, requests: list[dict[str, Any]]) -> list[str]:
        """A description of each recorded request the deployed policies would deny."""
        self._relearn({r["label"] for r in requests})
        known = [r for r in requests if r["label"] in self.policies]
        self.simulated_requests += len(known)
        self.unsimulated_requests.update(
            r["label"] for r in requests if r["label"] not in self.policies
        )
        answers = self.simulator.evaluate(
            [simulation(r, self.policies[r["label"]], self.other_roles) for r in known]
        )
        denials = [
            describe_denial(request, answer)
            for request, answer in zip(known, answers, strict=True)
            if answer["result"] != "Allowed"
        ]
        self.denied_requests += len(denials)
        return denials

    def check(self, aws: LocalAws) -> list[str]:
        """Denials among the requests recorded since the last check (then forgotten)."""
        requests = aws.iam_requests()
        aws.reset_iam_requests()
        return self.denials(requests)

    def summary(self) -> list[str]:
        """What the simulation covered, for the end of the test session."""
        lines = [
            f"IAM simulation: {self.simulated_requests} requests of the functions evaluated,"
            f" {self.denied_requests} denied (must-deny tests expect them; any other fails)"
        ]
        if self.unsimulated_requests:
            skipped = ", ".join(
                f"{label} ({count})" for label, count in sorted(self.unsimulated_requests.items())
            )
            lines.append(
                "not simulated (config the CDK app refuses, so no policies to hold them to):"
                f" {skipped}"
            )
        return lines

    def close(self) -> None:
        self.simulator.close()


def _session(role_arn: str) -> str:
    name = role_arn.rsplit("/", 1)[-1]
    return f"arn:{PARTITION}:sts::{role_arn.split(':')[4]}:assumed-role/{name}/{name}-function"
