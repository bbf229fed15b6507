"""The local AWS endpoint: moto's server in a child process, over real HTTP.

`LocalAws` starts `python -m jwtkeys_tools.local.aws_server`, waits for its ready line and
then gives callers what they need to point unchanged code at it: `endpoint_url` (every
service; export it as `AWS_ENDPOINT_URL` via `env()`), `s3_public_url` (S3 only, for
anonymous plain-HTTP fetches of published documents), and a control API to count
calls, inject faults and wipe state. Each function role gets its own access key
(`register_role`), so the endpoint knows which role made a request and records what
IAM would evaluate for it (`iam_requests`; see `aws_server.identity`). boto3 and
botocore are never patched: the KMS fidelity fixes live in the server process (see
`aws_server.kms_fixes`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from jwtkeys.errors import JwtKeysError
from jwtkeys_tools.local.local_service import LocalService

__all__ = ["CONTROL_PREFIX", "FAULT_KINDS", "LocalAws", "LocalAwsError"]

# "lost": the request is applied, then the connection drops before the answer is sent.
FAULT_KINDS = frozenset({"connection", "throttle", "http500", "lost"})
# Control requests live under this path on the main endpoint; never counted or faulted.
CONTROL_PREFIX = "/_jwtkeys/"
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 5.0
_CONTROL_TIMEOUT_S = 10.0
_TEST_CREDENTIAL = "testing"


class LocalAwsError(JwtKeysError):
    """The local AWS endpoint could not start, died, or refused a control request."""

    code = "LocalAwsError"


class LocalAws(LocalService):
    """A local AWS endpoint (moto + fidelity fixes) in a child process.

    Use it as a context manager, or call `start()` and `stop()`.
    """

    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._endpoint_url: str | None = None
        self._s3_public_url: str | None = None
        # Called with each LocalStack built on this endpoint (tests hook the IAM
        # simulation in here); the argument is the deployment.
        self.deployment_hooks: list[Callable[[Any], None]] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalAws:
        """Spawn the server and wait until it serves; raise LocalAwsError if it cannot."""
        if self._process is not None:
            return self
        # The server's stderr goes to a file, not a pipe nobody drains: a full pipe would
        # block the server mid-request. The file also explains a failed start.
        # It lives as long as the server, so no context manager: stop() closes it.
        self._log = tempfile.TemporaryFile(prefix="jwtkeys-local-aws-")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "jwtkeys_tools.local.aws_server"],
            stdin=subprocess.PIPE,  # our lifeline: the server exits when it closes
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=_child_env(),
        )
        self._process = process
        try:
            ready = self._await_ready(process)
        except BaseException:
            self.stop()
            raise
        self._endpoint_url = f"http://127.0.0.1:{ready['port']}"
        self._s3_public_url = f"http://127.0.0.1:{ready['s3_port']}"
        return self

    def _await_ready(self, process: subprocess.Popen[bytes]) -> dict[str, int]:
        assert process.stdout is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LocalAwsError(
                        f"local AWS endpoint not ready after {_START_TIMEOUT_S:.0f} s"
                        f"{self._log_tail()}"
                    )
                if not selector.select(timeout=min(remaining, 0.5)):
                    continue
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:  # EOF: the server exited before it was ready
                    process.wait(timeout=_STOP_TIMEOUT_S)
                    raise LocalAwsError(
                        f"local AWS endpoint exited with status {process.returncode} "
                        f"before it was ready{self._log_tail()}"
                    )
                line += chunk
        # The server prints nothing else on stdout; close our end so it cannot fill up.
        process.stdout.close()
        try:
            ready = json.loads(line)
            return {"port": int(ready["port"]), "s3_port": int(ready["s3_port"])}
        except (ValueError, KeyError, TypeError) as exc:
            raise LocalAwsError(f"local AWS endpoint sent a bad ready line: {line!r}") from exc

    def _log_tail(self, limit: int = 4000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace").strip()
        return f"; its log ends:\n{text[-limit:]}" if text else ""

    def stop(self) -> None:
        """Stop the server (gracefully, then by force) and release its resources; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):  # EOF on the lifeline: the server stops
                    process.stdin.close()
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None and not process.stdout.closed:
                process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._endpoint_url = self._s3_public_url = None

    # ------------------------------------------------------------------ addresses

    @property
    def endpoint_url(self) -> str:
        """http://127.0.0.1:PORT, every service (for AWS_ENDPOINT_URL)."""
        if self._endpoint_url is None:
            raise LocalAwsError("the local AWS endpoint is not running: call start() first")
        return self._endpoint_url

    @property
    def s3_public_url(self) -> str:
        """http://127.0.0.1:PORT2, S3 only, path-style: `{s3_public_url}/{bucket}/{key}`."""
        if self._s3_public_url is None:
            raise LocalAwsError("the local AWS endpoint is not running: call start() first")
        return self._s3_public_url

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 (in this or any process) at the endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": _TEST_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": _TEST_CREDENTIAL,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def client(self, service: str, **kw: Any) -> Any:
        """A boto3 client for `service` pointed at the endpoint; `kw` overrides the defaults."""
        import boto3

        options: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": _TEST_CREDENTIAL,
            "aws_secret_access_key": _TEST_CREDENTIAL,
        }
        options.update(kw)
        return boto3.client(service, **options)  # type: ignore[call-overload]

    def register_role(
        self, role_arn: str, *, label: str = "", list_bucket: Mapping[str, bool] | None = None
    ) -> dict[str, str]:
        """Credentials that the endpoint attributes to `role_arn` (boto3 client keywords).

        `label` tells apart deployments that share a role name; `list_bucket` is what an
        IAM simulation decided about s3:ListBucket (no prefix) per bucket, which decides
        whether a missing object answers 404 or 403. Registering again replaces it.
        """
        digest = hashlib.sha256(f"{role_arn}\n{label}".encode()).hexdigest()[:16].upper()
        access_key_id = f"AKIALOCAL{digest}"
        self._control(
            "POST",
            "principals",
            {
                "access_key_id": access_key_id,
                "role_arn": role_arn,
                "label": label,
                "list_bucket": dict(list_bucket or {}),
            },
        )
        return {"aws_access_key_id": access_key_id, "aws_secret_access_key": _TEST_CREDENTIAL}

    def iam_requests(self) -> list[dict[str, Any]]:
        """What IAM would evaluate for each request of a registered role, in order."""
        requests: list[dict[str, Any]] = self._control("GET", "iam-requests")["requests"]
        return requests

    def reset_iam_requests(self) -> None:
        """Forget the IAM requests recorded so far."""
        self._control("DELETE", "iam-requests")

    # ------------------------------------------------------------------ control

    def calls(self) -> list[tuple[str, str]]:
        """(service, operation) of each AWS request since the last reset_calls, in order.

        Requests a fault made fail are counted too (a retried call shows twice).
        """
        payload = self._control("GET", "calls")
        return [(str(service), str(operation)) for service, operation in payload["calls"]]

    def reset_calls(self) -> None:
        """Forget the calls counted so far."""
        self._control("DELETE", "calls")

    def inject_faults(
        self,
        kind: str,
        *,
        after: int = 0,
        count: int | None = None,
        service: str | None = None,
        operation: str | None = None,
    ) -> None:
        """Let `after` matching requests through, then fail `count` (None: all until cleared).

        `kind`: "connection" (socket closed, no answer), "throttle" (the service's own
        throttling error), "http500" (HTTP 500 in the service's error format) or "lost"
        (the request is applied, then the socket closes before the answer is sent). A
        request matches when `service` and `operation` (as `calls()` names them) match
        or are None. Rules add up; each counts every request it matches.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {sorted(FAULT_KINDS)}, not {kind!r}")
        if after < 0 or (count is not None and count < 0):
            raise ValueError("after and count must not be negative")
        rule = {
            "kind": kind,
            "after": after,
            "count": count,
            "service": service,
            "operation": operation,
        }
        self._control("POST", "faults", rule)

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._control("DELETE", "faults")

    def reset(self) -> None:
        """Wipe all moto state (every service, every region). Calls and faults are kept."""
        self._control("POST", "reset")

    def _control(self, method: str, command: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        # Always our own http://127.0.0.1 endpoint, never a caller-supplied URL.
        request = urllib.request.Request(  # noqa: S310
            self.endpoint_url + CONTROL_PREFIX + command,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=_CONTROL_TIMEOUT_S) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            exc.close()
            raise LocalAwsError(f"control {method} {command} refused: {detail}") from exc
        except OSError as exc:
            raise LocalAwsError(f"control {method} {command} failed: {exc}") from exc


def _child_env() -> dict[str, str]:
    """The server's environment: ours, with jwtkeys importable and no AWS redirection."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    # The server is moto itself; an inherited AWS_ENDPOINT_URL would only confuse it.
    env.pop("AWS_ENDPOINT_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env
