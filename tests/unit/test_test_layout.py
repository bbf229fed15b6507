"""The test tree keeps its layout: unit tests start nothing, no test imports another test."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
# What starts a server or a process, directly or through a fixture. (Importing the
# emulators' pure parts, like the encoded-query parser, starts nothing.)
SERVER_MODULES = {
    "subprocess",
    "socket",
    "socketserver",
    "http.server",
    "multiprocessing",
}
SERVER_FIXTURES = {
    "local_aws",
    "local_aws_server",
    "local_aws_env",
    "iam_session",
    "servicenow",
    "servicenow_server",
    "stack",
    "sn_stack",
    "instance",
}


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


def test_no_test_module_imports_another() -> None:
    offenders = [
        f"{path.relative_to(TESTS)}: {name}"
        for path in TESTS.rglob("*.py")
        for name in _imports(ast.parse(path.read_text()))
        if name.rsplit(".", 1)[-1].startswith("test_")
    ]
    assert offenders == []


def test_unit_tests_start_no_server_or_process() -> None:
    offenders = []
    for path in (TESTS / "unit").glob("test_*.py"):
        tree = ast.parse(path.read_text())
        for name in _imports(tree):
            if name in SERVER_MODULES or name.startswith(tuple(f"{m}." for m in SERVER_MODULES)):
                offenders.append(f"{path.name} imports {name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                for argument in {arg.arg for arg in node.args.args} & SERVER_FIXTURES:
                    offenders.append(f"{path.name}::{node.name} uses the {argument} fixture")
    assert offenders == []
