"""The dry run's Lambda: the Invoke API and IAM-auth Function URLs over the real services.

moto cannot run a function without Docker, so this small HTTP server answers Lambda's
Invoke (POST /2015-03-31/functions/NAME/invocations, errors as X-Amz-Function-Error) and
Function URL requests (POST /url/NAME/), which it refuses with 403 unless they carry a
valid SigV4 signature for `lambda` by the one known caller, as IAM auth would. Both call
the same services the deployed handlers call.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from jwtkeys_tools.local.local_service import LocalService
from jwtkeys_tools.local.loopback_server import LoopbackServer

Handler = Callable[[dict[str, Any]], dict[str, Any]]

_INVOKE_PATH = re.compile(r"\A/2015-03-31/functions/(?P<name>[^/]+)/invocations\Z")
_URL_PATH = re.compile(r"\A/url/(?P<name>[^/]+)/\Z")
_AUTHORIZATION = re.compile(
    r"\AAWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})\Z"
)


class LocalFunctions(LocalService):
    """Functions by name, reachable by Invoke and (for `url_handlers`) by Function URL."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        url_handlers: Mapping[str, Handler],
        caller: Credentials,
        caller_arn: str,
        region: str,
    ) -> None:
        self._handlers = dict(handlers)
        self._url_handlers = dict(url_handlers)
        self._caller = caller
        self._caller_arn = caller_arn
        self._region = region
        self._http = LoopbackServer("the local functions")

    @property
    def endpoint_url(self) -> str:
        return self._http.url

    def function_url(self, name: str) -> str:
        return f"{self.endpoint_url}/url/{name}/"

    def start(self) -> LocalFunctions:
        functions = self

        class RequestHandler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, answer_headers, answer = functions.serve(self.path, headers, body)
                self.send_response(status)
                for name, value in answer_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._http.start(RequestHandler)
        return self

    def stop(self) -> None:
        self._http.stop()

    def serve(
        self, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        invoke = _INVOKE_PATH.match(path)
        if invoke and invoke["name"] in self._handlers:
            return self._invoke(self._handlers[invoke["name"]], body)
        url = _URL_PATH.match(path)
        if url and url["name"] in self._url_handlers:
            return self._url(self._url_handlers[url["name"]], path, headers, body)
        return 404, {"Content-Type": "application/json"}, b'{"Message":"Function not found"}'

    def _invoke(self, handler: Handler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        json_type = {"Content-Type": "application/json"}
        try:
            answer = handler(json.loads(body or b"null"))
        except Exception as error:  # what the Lambda runtime reports
            failure = {"errorType": type(error).__name__, "errorMessage": str(error)}
            return (
                200,
                {**json_type, "X-Amz-Function-Error": "Unhandled"},
                json.dumps(failure).encode(),
            )
        return 200, json_type, json.dumps(answer).encode()

    def _url(
        self, handler: Handler, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if not self._signed_by_caller(path, headers, body):
            # IAM auth answers before the function runs at all.
            return 403, {"Content-Type": "application/json"}, b'{"Message":"Forbidden"}'
        event = {
            "version": "2.0",
            "rawPath": path,
            "rawQueryString": "",
            "headers": dict(headers),
            "requestContext": {
                "http": {"method": "POST", "path": path, "sourceIp": "127.0.0.1"},
                "authorizer": {
                    "iam": {"accessKey": self._caller.access_key, "userArn": self._caller_arn}
                },
            },
            "body": body.decode("utf-8"),
            "isBase64Encoded": False,
        }
        answer = handler(event)
        return (
            int(answer["statusCode"]),
            dict(answer.get("headers", {})),
            str(answer["body"]).encode(),
        )

    def _signed_by_caller(self, path: str, headers: Mapping[str, str], body: bytes) -> bool:
        match = _AUTHORIZATION.match(headers.get("authorization", ""))
        if match is None or match["service"] != "lambda" or match["region"] != self._region:
            return False
        if match["key"] != self._caller.access_key:
            return False
        signed = match["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return False
        request = AWSRequest(
            method="POST",
            url=f"http://{headers['host']}{path}",
            data=body,
            headers={name: headers[name] for name in signed},
        )
        request.context["timestamp"] = headers["x-amz-date"]
        auth = SigV4Auth(self._caller, "lambda", self._region)
        expected = auth.signature(
            auth.string_to_sign(request, auth.canonical_request(request)), request
        )
        return hmac.compare_digest(expected, match["signature"])
