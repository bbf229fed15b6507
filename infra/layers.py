"""The two Lambda layers, staged on this machine: never Docker, never at deploy time.

- core: the `jwtkeys` package as `python/jwtkeys/...` (Lambda puts `/opt/python` on the
  path), built by inclusion: the runtime modules the functions import;
- deps: the runtime pins of pyproject.toml, installed by pip for the Lambda platform
  (arm64, the runtime's Python) into `python/`, cached under `build/layers/` by the
  hash of everything that decides its content.

Both ship bytecode compiled by an interpreter of the runtime's exact Python version.
Lambda mounts layers read-only at `/opt`: without shipped bytecode, every cold start
compiles every module it imports (boto3, botocore, cryptography, ...), roughly doubling
the import time. The `.pyc` files are unchecked-hash ones (PEP 552: used without looking
at the source's timestamp, which the zip does not keep) with `/opt/python/...` as their
recorded file name, so they are byte-for-byte the same on every build.

Both are CDK local bundlers (ILocalBundling): CDK calls them when it stages the asset,
and skips them for stacks outside `cdk deploy`'s selection.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from .constants import (
    BUILD_CACHE_DIR,
    CONSTRAINTS_FILE,
    CORE_LAYER_SUBPACKAGES,
    CORE_PACKAGE_DIR,
    DEPS_REQUIREMENTS,
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    LAYER_PIP_PLATFORMS,
)

# The bundling image is mandatory in BundlingOptions, but local bundling always
# succeeds or raises, so no container is ever started: this names no real image.
_NO_DOCKER = DockerImage.from_registry("jwtkeys/no-docker-bundling")
# Where Lambda extracts layers: the name compiled into the bytecode (tracebacks show it).
LAYER_MOUNT = "/opt"
# Files pip leaves that Lambda never needs: bytecode compiled for this machine's
# interpreter and console scripts whose shebang names this machine's venv.
_PRUNED_NAMES = ("__pycache__", "bin")


def runtime_python_version() -> str:
    """`3.14` for `python3.14`: what pip must resolve wheels for."""
    return LAMBDA_RUNTIME.name.removeprefix("python")


class LayerBuildError(RuntimeError):
    """A layer cannot be staged as Lambda needs it (no runtime interpreter, pip failed)."""


def _interpreter_version(candidate: Path) -> tuple[str, bytes] | None:
    """(`3.13`, magic number) of an interpreter, or None if it does not run."""
    try:
        result = subprocess.run(
            [
                str(candidate),
                "-c",
                "import sys, importlib.util; "
                "print(f'{sys.version_info[0]}.{sys.version_info[1]}', "
                "importlib.util.MAGIC_NUMBER.hex())",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except OSError:
        return None
    if result.returncode != 0 or len(result.stdout.split()) != 2:
        return None
    version, magic = result.stdout.split()
    return version, bytes.fromhex(magic)


def _interpreter_candidates(version: str) -> list[Path]:
    """This interpreter, `python3.X` on PATH, then pyenv's builds of that version."""
    found = [Path(sys.executable)]
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(Path(on_path))
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found += sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True)
    return found


def find_interpreter(version: str) -> tuple[Path, bytes] | None:
    """A Python `version` (`3.13`) interpreter on this machine and its magic number."""
    for candidate in _interpreter_candidates(version):
        found = _interpreter_version(candidate)
        if found is not None and found[0] == version:
            return candidate, found[1]
    return None


def runtime_interpreter() -> tuple[Path, bytes]:
    """An interpreter of the runtime's Python version and its bytecode magic number.

    Bytecode is only used by an interpreter with the same magic number (one per minor
    version), so the layers are compiled by such an interpreter or the build fails:
    a layer silently without usable bytecode would double every cold start.
    """
    wanted = runtime_python_version()
    found = find_interpreter(wanted)
    if found is not None:
        return found
    raise LayerBuildError(
        f"no Python {wanted} interpreter found to compile the layers' bytecode for the "
        f"{LAMBDA_RUNTIME.name} runtime: install one as python{wanted} on PATH"
    )


def compile_bytecode(python_dir: Path, interpreter: Path | None = None) -> None:
    """Compile every module under `python_dir` for the runtime, as Lambda will find it.

    `python_dir` is the layer's `python/` folder; the file names compiled in are those
    under `/opt/python`. Unchecked-hash pycs carry no timestamp, so the output (and the
    layer's asset hash) depends on the sources and the interpreter version only.
    """
    if interpreter is None:
        interpreter = runtime_interpreter()[0]
    command = [str(interpreter), "-m", "compileall", "-q", "-f"]
    command += ["--invalidation-mode", "unchecked-hash"]
    command += ["-s", str(python_dir.parent), "-p", LAYER_MOUNT, str(python_dir)]
    # PYTHONPATH of this venv must not leak into the runtime interpreter.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise LayerBuildError(
            f"compiling the layer's bytecode failed ({' '.join(command)}):\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )


def stage_core_layer(output_dir: Path, package_dir: Path = CORE_PACKAGE_DIR) -> None:
    """Copy the runtime modules the functions import to `output_dir/python/jwtkeys`.

    By inclusion: the package's top-level modules and CORE_LAYER_SUBPACKAGES, nothing
    else, so code added beside them (an SDK for callers, say) never ships by accident.
    Then compiled for the runtime's Python.
    """
    target = output_dir / "python" / package_dir.name
    target.mkdir(parents=True, exist_ok=True)
    for module in sorted(package_dir.glob("*.py")):
        shutil.copy2(module, target / module.name)
    for subpackage in CORE_LAYER_SUBPACKAGES:
        shutil.copytree(
            package_dir / subpackage,
            target / subpackage,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            dirs_exist_ok=True,
        )
    compile_bytecode(output_dir / "python")


def host_pip_platforms() -> tuple[str, ...]:
    """pip's platform tags for this machine: the bench stages a layer it can import."""
    machine = platform.machine()
    return tuple(tag.replace("aarch64", machine) for tag in LAYER_PIP_PLATFORMS)


def deps_cache_key(
    requirements: Path = DEPS_REQUIREMENTS,
    constraints: Path = CONSTRAINTS_FILE,
    platforms: tuple[str, ...] = LAYER_PIP_PLATFORMS,
) -> str:
    """Hash of what decides the dependency layer's bytes: pins, platform, Python version.

    The bytecode's form is part of it (its magic number follows the Python version), so
    a layer cached without bytecode, or with another kind of it, is never reused.
    """
    digest = hashlib.sha256()
    for part in (
        requirements.read_bytes(),
        constraints.read_bytes() if constraints.exists() else b"",
        runtime_python_version().encode(),
        " ".join(platforms).encode(),
        f"bytecode:unchecked-hash:{LAYER_MOUNT}".encode(),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:32]


def build_deps_layer(
    output_dir: Path,
    requirements: Path = DEPS_REQUIREMENTS,
    constraints: Path = CONSTRAINTS_FILE,
    cache_dir: Path = BUILD_CACHE_DIR,
    platforms: tuple[str, ...] = LAYER_PIP_PLATFORMS,
) -> Path:
    """Fill `output_dir/python` with the pinned wheels for Lambda; return the cache folder.

    The pip run happens once per cache key; later synths copy (or hard-link) the cached
    tree. The cache entry is renamed into place only when complete, so an interrupted
    or concurrent build never leaves a half-filled cache behind.
    """
    cached = cache_dir / f"deps-{deps_cache_key(requirements, constraints, platforms)}"
    if not (cached / "python").is_dir():
        interpreter = runtime_interpreter()[0]  # fail before a long pip run
        cache_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="deps-build-", dir=cache_dir))
        try:
            _pip_install(scratch / "python", requirements, constraints, platforms)
            compile_bytecode(scratch / "python", interpreter)
            try:
                scratch.rename(cached)
            except OSError:
                if not (cached / "python").is_dir():
                    raise
                # Another synth finished the same build first: its copy is as good.
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    _link_tree(cached / "python", output_dir / "python")
    return cached


def _pip_install(
    target: Path, requirements: Path, constraints: Path, platforms: tuple[str, ...]
) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile"]
    command += ["--disable-pip-version-check", "--no-input"]
    for tag in platforms:
        command += ["--platform", tag]
    command += ["--only-binary=:all:", "--implementation", "cp"]
    command += ["--python-version", runtime_python_version()]
    command += ["-r", str(requirements), "--target", str(target)]
    if constraints.exists():
        command += ["-c", str(constraints)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LayerBuildError(
            f"building the dependency layer failed ({' '.join(command)}):\n{result.stderr}"
        )
    for name in _PRUNED_NAMES:
        for path in list(target.rglob(name)):
            if path.is_dir():
                shutil.rmtree(path)


def _link_tree(source: Path, destination: Path) -> None:
    def link_or_copy(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
        except OSError:  # another file system: hard links cannot cross it
            shutil.copy2(src, dst)
        return dst

    shutil.copytree(source, destination, copy_function=link_or_copy, dirs_exist_ok=True)


@jsii.implements(ILocalBundling)
class _LocalStager:
    """Runs a staging function on this machine for CDK's asset bundling."""

    def __init__(self, stage: Callable[[Path], object]) -> None:
        self._stage = stage

    def try_bundle(self, output_dir: str, *_options: Any, **_keywords: Any) -> bool:
        # jsii hands the BundlingOptions over positionally; they are ours and unused here.
        # Returning False would make CDK fall back to Docker: fail loudly instead.
        self._stage(Path(output_dir))
        return True


def _bundled_code(
    source: Path, stage: Callable[[Path], object], asset_hash: str | None = None
) -> lambda_.Code:
    bundling = BundlingOptions(image=_NO_DOCKER, local=_LocalStager(stage))
    if asset_hash is None:
        # The staged output decides the hash: edits to dev-only modules change nothing.
        return lambda_.Code.from_asset(
            str(source), asset_hash_type=AssetHashType.OUTPUT, bundling=bundling
        )
    return lambda_.Code.from_asset(
        str(source), asset_hash_type=AssetHashType.CUSTOM, asset_hash=asset_hash, bundling=bundling
    )


class Layers(Construct):
    """The core (jwtkeys) and dependency layers every function of the keyset uses."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        compatibility: dict[str, Any] = {
            "compatible_runtimes": [LAMBDA_RUNTIME],
            "compatible_architectures": [LAMBDA_ARCHITECTURE],
        }
        self.core = lambda_.LayerVersion(
            self,
            "Core",
            code=_bundled_code(CORE_PACKAGE_DIR, stage_core_layer),
            description="jwtkeys runtime package (python/jwtkeys)",
            **compatibility,
        )
        self.deps = lambda_.LayerVersion(
            self,
            "Deps",
            code=_bundled_code(
                DEPS_REQUIREMENTS.parent, build_deps_layer, asset_hash=deps_cache_key()
            ),
            description="jwtkeys runtime dependencies (pinned, manylinux aarch64)",
            **compatibility,
        )

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        return [self.core, self.deps]


def staged_size(stage: Callable[[Path], object]) -> tuple[int, int]:
    """(bytes, files) of a layer as Lambda unzips it, staged into a scratch folder."""
    with tempfile.TemporaryDirectory() as scratch:
        stage(Path(scratch))
        files = [path for path in Path(scratch).rglob("*") if path.is_file()]
        return sum(path.stat().st_size for path in files), len(files)


def main() -> None:
    """Print both layers' unzipped sizes (`python -m infra.layers`), for the README."""
    for name, stage in (("core", stage_core_layer), ("deps", build_deps_layer)):
        size, files = staged_size(stage)
        print(f"{name}: {size / 1_000_000:.2f} MB unzipped in {files} files")


if __name__ == "__main__":
    main()
