"""The two layers' staged folders, as CDK packaged them for upload."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from infra.constants import DEPS_REQUIREMENTS
from infra.layers import runtime_python_version
from tests.infra.conftest import DEV, PROJECT_ROOT, Synth, logical_id_starting

ELF_MACHINE_AARCH64 = 183


def _layer_dir(synth: Synth, prefix: str) -> Path:
    logical_id = logical_id_starting(synth.templates[DEV], "AWS::Lambda::LayerVersion", prefix)
    return synth.asset_dir(DEV, logical_id)


def test_core_layer_is_the_jwtkeys_package_without_dev_only_code(synth: Synth) -> None:
    staged = _layer_dir(synth, "LayersCore")

    assert sorted(p.name for p in staged.iterdir()) == ["python"]
    assert sorted(p.name for p in (staged / "python").iterdir()) == ["jwtkeys"]
    package = staged / "python" / "jwtkeys"
    for module in ("__init__.py", "names.py", "rotation_policy.py", "metrics_catalog.py"):
        assert (package / module).is_file(), module
    for dev_only in ("local", "bench", "cli"):
        assert not (package / dev_only).exists(), dev_only
    assert not list(package.rglob("__pycache__"))
    source = PROJECT_ROOT / "layers" / "core" / "jwtkeys"
    assert (package / "names.py").read_bytes() == (source / "names.py").read_bytes()


def test_deps_layer_holds_the_runtime_pins_built_for_lambda_arm64(synth: Synth) -> None:
    python = _layer_dir(synth, "LayersDeps") / "python"
    installed = {p.name.lower() for p in python.glob("*.dist-info")}

    for requirement in DEPS_REQUIREMENTS.read_text().split():
        if "==" in requirement:
            name, version = requirement.split("==")
            dist = f"{name.replace('-', '_').lower()}-{version}.dist-info"
            assert dist in installed, f"{requirement} missing from {sorted(installed)}"
    for package in ("jwt", "cryptography", "aws_lambda_powertools", "boto3", "requests"):
        assert (python / package).is_dir(), package
    version = runtime_python_version().replace(".", "")
    (cffi,) = python.glob("_cffi_backend.*.so")
    assert cffi.name == f"_cffi_backend.cpython-{version}-aarch64-linux-gnu.so"
    rust = next((python / "cryptography" / "hazmat" / "bindings").glob("_rust*.so"))
    header = rust.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == ELF_MACHINE_AARCH64
    # Bytecode of this machine's interpreter and venv scripts are of no use in Lambda.
    assert not list(python.rglob("__pycache__"))
    assert not (python / "bin").exists()


def test_deps_requirements_are_the_runtime_pins_of_pyproject() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    pins = [
        line.strip()
        for line in DEPS_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    assert pins == pyproject["project"]["dependencies"]


def _jwtkeys_imports(handler: Path) -> list[str]:
    tree = ast.parse(handler.read_text())
    return sorted(
        {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("jwtkeys")
        }
    )


def test_handlers_need_nothing_the_core_layer_leaves_out(synth: Synth) -> None:
    # Given only the staged core layer on the path (deps come from this venv)
    core = _layer_dir(synth, "LayersCore") / "python"
    modules = [
        module
        for function in ("sign", "keeper")
        for module in _jwtkeys_imports(PROJECT_ROOT / "functions" / function / "handler.py")
    ]
    assert modules, "the handlers import nothing from jwtkeys?"
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "import jwtkeys\n"
        "print(jwtkeys.__file__)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('jwtkeys.local', 'jwtkeys.bench',"
        " 'jwtkeys.cli'))))\n"
    )

    # When every jwtkeys module the handlers import is imported
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(core)},
        capture_output=True,
        text=True,
        check=False,
    )

    # Then all resolve inside the layer, and no dev-only module was needed
    assert result.returncode == 0, result.stderr[-3000:]
    origin, dev_only = result.stdout.splitlines()
    assert origin.startswith(str(core))
    assert dev_only == "[]"
