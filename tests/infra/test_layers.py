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
RUNTIME_ROOT = PROJECT_ROOT / "layers" / "core"


def _layer_dir(synth: Synth, prefix: str) -> Path:
    logical_id = logical_id_starting(synth.templates[DEV], "AWS::Lambda::LayerVersion", prefix)
    return synth.asset_dir(DEV, logical_id)


def _module_file(module: str) -> Path | None:
    path = RUNTIME_ROOT.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _imported_runtime_modules(source: Path) -> set[str]:
    """The jwtkeys modules a file imports anywhere (lazy imports inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] == "jwtkeys" and _module_file(name)}
    return found


def _import_closure(entry_points: list[Path]) -> set[Path]:
    """Every runtime file the entry points need: modules imported, and their packages."""
    pending = [m for entry in entry_points for m in _imported_runtime_modules(entry)]
    files: set[Path] = set()
    while pending:
        module = pending.pop()
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            file = _module_file(".".join(parts[:depth]))
            if file is not None and file not in files:
                files.add(file)
                pending.extend(_imported_runtime_modules(file))
    return files


def test_core_layer_holds_exactly_the_runtime_modules_the_functions_import(synth: Synth) -> None:
    # Given the core layer as CDK staged it, and the functions' handlers
    staged = _layer_dir(synth, "LayersCore")
    handlers = sorted((PROJECT_ROOT / "functions").glob("*/handler.py"))
    assert handlers

    # When both are listed as files of the jwtkeys package
    layer_files = {
        p.relative_to(staged / "python").as_posix()
        for p in (staged / "python").rglob("*")
        if p.is_file() and p.parent.name != "__pycache__"
    }
    needed = {p.relative_to(RUNTIME_ROOT).as_posix() for p in _import_closure(handlers)}

    # Then the layer is built by inclusion: what the functions import, nothing else
    assert sorted(p.name for p in staged.iterdir()) == ["python"]
    assert not needed - layer_files, f"missing from the layer: {sorted(needed - layer_files)}"
    assert not layer_files - needed, f"not imported by any function: {sorted(layer_files - needed)}"
    # Bytecode beside each module, and only there (tests/infra/test_cold_start.py checks it).
    version = runtime_python_version().replace(".", "")
    pycs = {p.name for p in (staged / "python").rglob("__pycache__/*")}
    assert pycs == {f"{Path(f).stem}.cpython-{version}.pyc" for f in layer_files}
    source = RUNTIME_ROOT / "jwtkeys" / "names.py"
    assert (staged / "python" / "jwtkeys" / "names.py").read_bytes() == source.read_bytes()


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
    # Bytecode only for the runtime's Python; venv scripts are of no use in Lambda.
    tags = {p.name.split(".")[-2] for p in python.rglob("__pycache__/*.pyc")}
    assert tags == {f"cpython-{version}"}
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
        "print(sorted(m for m in sys.modules if m.startswith('jwtkeys_tools')))\n"
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
