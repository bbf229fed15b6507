"""Load a function's handler.py as Lambda would: a fresh module, environment set first."""

from __future__ import annotations

import importlib.util
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


@dataclass
class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers read."""

    function_name: str = "jwtkeys-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:jwtkeys-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000001"
    log_group_name: str = "/aws/lambda/jwtkeys-test"
    log_stream_name: str = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_handler(
    function: str, environ: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """Import functions/<function>/handler.py afresh with `environ` set (a cold start)."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    path = ROOT / "functions" / function / "handler.py"
    spec = importlib.util.spec_from_file_location(f"{function}_handler_{next(_counter)}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def emf_documents(output: str) -> list[dict[str, Any]]:
    """The EMF documents among a function's stdout lines."""
    documents = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def emitted_metrics(output: str) -> set[tuple[str, frozenset[str]]]:
    """(metric name, dimension names) for every metric in the EMF output."""
    emitted = set()
    for document in emf_documents(output):
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimensions in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    emitted.add((metric["Name"], frozenset(dimensions)))
    return emitted
