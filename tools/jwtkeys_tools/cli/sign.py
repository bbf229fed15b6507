"""`jwtkeys sign`: ask the signing function for a token and print its JSON answer.

The target is the deployed function, by Lambda Invoke (`--function NAME_OR_ARN`, or
the JWTKEYS_SIGN_FUNCTION environment variable) or by its IAM-authenticated Function
URL (`--url`); or `--local`: the signing function's own code run in this process,
against the stack `jwtkeys local up` runs (found like `status --local` finds it), or,
when none runs, configured from the signer's environment variables (JWTKEYS_KEYSET,
JWTKEYS_ISSUER, ..., AWS_ENDPOINT_URL) as the function reads them. The function's EMF
metric blobs go to functions.log beside the local state (`--show-metrics`: on stderr).
AWS credentials and region come from the usual boto3 sources.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from jwtkeys.errors import ConfigurationError, RequestRefused, SigningUnavailable
from jwtkeys_tools.cli.common import non_empty, refused

EXIT_ISSUED = 0
EXIT_USAGE = 2
FUNCTION_ENV = "JWTKEYS_SIGN_FUNCTION"


def register(subparsers: Any) -> None:
    """Add the `sign` command to the `jwtkeys` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sign",
        help="get a token from the signing function",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--subject", required=True, type=non_empty, metavar="S")
    parser.add_argument("--audience", required=True, type=non_empty, metavar="A")
    parser.add_argument(
        "--claims", type=_claims, metavar="JSON", help="extra claims, a JSON object"
    )
    parser.add_argument(
        "--ttl", type=_ttl, metavar="SECONDS", help="token lifetime (default: the keyset's)"
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--function",
        metavar="NAME_OR_ARN",
        help=f"the signing function, by Lambda Invoke (default: ${FUNCTION_ENV})",
    )
    target.add_argument("--url", metavar="URL", help="the signing function's Function URL")
    target.add_argument(
        "--local",
        action="store_true",
        help="run the signing code here, against `jwtkeys local up` (or the signer's"
        " environment variables)",
    )
    parser.add_argument(
        "--region", metavar="REGION", help="AWS region (default: boto3's, or the URL's)"
    )
    from jwtkeys_tools.cli.local_output import add_show_metrics_argument

    add_show_metrics_argument(parser)
    parser.set_defaults(run=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """Sign and report: the function's JSON on stdout, or one reason line on stderr."""
    function = args.function
    if not (args.url or args.local or function):
        function = os.environ.get(FUNCTION_ENV)
        if not function:
            args.parser.error(f"give --function, --url or --local (or set {FUNCTION_ENV})")
    from botocore.exceptions import BotoCoreError

    try:
        invoker = (
            _local_invoker(args.region, args.show_metrics)
            if args.local
            else _invoker(function, args.url, args.region)
        )
    except (ValueError, BotoCoreError, ConfigurationError) as error:
        # A bad URL, no region, a missing signer setting: the command line (or its
        # environment) is incomplete.
        args.parser.error(str(error))
    payload: dict[str, Any] = {"subject": args.subject, "audience": args.audience}
    if args.claims is not None:
        payload["claims"] = args.claims
    if args.ttl is not None:
        payload["ttl_seconds"] = args.ttl
    try:
        issued = invoker.invoke(payload)
    except RequestRefused as refusal:
        return refused("sign", refusal.code, str(refusal))  # str() leads with the reason
    except SigningUnavailable as error:
        return refused("sign", error.code, str(error))
    sys.stdout.write(json.dumps(issued.to_response(), sort_keys=True) + "\n")
    return EXIT_ISSUED


def _invoker(function: str | None, url: str | None, region: str | None) -> Any:
    # boto3 is imported only here: `jwtkeys verify` and `--help` stay quick.
    import boto3

    from jwtkeys.client.invokers import FunctionUrlInvoker, LambdaInvoker

    session = boto3.Session(region_name=region) if region else boto3.Session()
    if url:
        return FunctionUrlInvoker(url, session, region)
    assert function is not None
    return LambdaInvoker(function, session.client("lambda"))


def _local_invoker(region: str | None, show_metrics: bool) -> Any:
    import io

    import boto3
    from aws_lambda_powertools import Logger

    from jwtkeys import metrics_catalog, names
    from jwtkeys.client.invokers import LocalInvoker
    from jwtkeys.clock import SystemClock
    from jwtkeys.signer.service import SignService
    from jwtkeys_tools.cli.local_output import FunctionOutput
    from jwtkeys_tools.cli.target import local_state_path, read_local_state

    if local_state_path().exists():
        environ: Mapping[str, str] = read_local_state().signer_env
    elif os.environ.get(names.ENV_KEYSET):
        environ = os.environ
    else:
        raise ConfigurationError(
            f"no local stack ({local_state_path()} is missing: start one with `jwtkeys local"
            f" up`) and no signer settings in the environment ({names.ENV_KEYSET}, ...)"
        )
    # The function's logs and EMF metrics would mix with the JSON on stdout and the one
    # line on stderr that scripts read: metrics go to the functions' log (or, asked for,
    # stderr); logs are dropped. A logger name of its own: Powertools configures one
    # handler per name, and the first configuration wins for every later Logger of that
    # name in the process.
    output = FunctionOutput(show_metrics)
    service = SignService.create(
        environ,
        boto3.Session(region_name=region).client("kms"),
        SystemClock(),
        logger=Logger(service="jwtkeys-sign-cli", stream=io.StringIO()),
        metrics=output.metrics(metrics_catalog.SIGNER_SERVICE, environ.get(names.ENV_KEYSET, "")),
    )
    return LocalInvoker(service)


def _claims(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not valid JSON") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _ttl(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
