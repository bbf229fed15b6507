"""The two Lambda layers, staged on this machine: never Docker, never at deploy time.

- core: the `jwtkeys` package as `python/jwtkeys/...` (Lambda puts `/opt/python` on the
  path), built by inclusion: the runtime modules the functions import;
- deps: the runtime pins of pyproject.toml, installed by pip for the Lambda platform
  (arm64, the runtime's Python) into `python/`, cached under `build/layers/` by the
  hash of everything that decides its content.

Both are CDK local bundlers (ILocalBundling): CDK calls them when it stages the asset,
and skips them for stacks outside `cdk deploy`'s selection.
"""

from __future__ import annotations

import hashlib
import os
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
# Files pip leaves that Lambda never needs: bytecode compiled for this machine's
# interpreter and console scripts whose shebang names this machine's venv.
_PRUNED_NAMES = ("__pycache__", "bin")


def runtime_python_version() -> str:
    """`3.14` for `python3.14`: what pip must resolve wheels for."""
    return LAMBDA_RUNTIME.name.removeprefix("python")


def stage_core_layer(output_dir: Path, package_dir: Path = CORE_PACKAGE_DIR) -> None:
    """Copy the runtime modules the functions import to `output_dir/python/jwtkeys`.

    By inclusion: the package's top-level modules and CORE_LAYER_SUBPACKAGES, nothing
    else, so code added beside them (an SDK for callers, say) never ships by accident.
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


def deps_cache_key(
    requirements: Path = DEPS_REQUIREMENTS, constraints: Path = CONSTRAINTS_FILE
) -> str:
    """Hash of what decides the dependency layer's bytes: pins, platform, Python version."""
    digest = hashlib.sha256()
    for part in (
        requirements.read_bytes(),
        constraints.read_bytes() if constraints.exists() else b"",
        runtime_python_version().encode(),
        " ".join(LAYER_PIP_PLATFORMS).encode(),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:32]


def build_deps_layer(
    output_dir: Path,
    requirements: Path = DEPS_REQUIREMENTS,
    constraints: Path = CONSTRAINTS_FILE,
    cache_dir: Path = BUILD_CACHE_DIR,
) -> Path:
    """Fill `output_dir/python` with the pinned wheels for Lambda; return the cache folder.

    The pip run happens once per cache key; later synths copy (or hard-link) the cached
    tree. The cache entry is renamed into place only when complete, so an interrupted
    or concurrent build never leaves a half-filled cache behind.
    """
    cached = cache_dir / f"deps-{deps_cache_key(requirements, constraints)}"
    if not (cached / "python").is_dir():
        cache_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="deps-build-", dir=cache_dir))
        try:
            _pip_install(scratch / "python", requirements, constraints)
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


def _pip_install(target: Path, requirements: Path, constraints: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile"]
    command += ["--disable-pip-version-check", "--no-input"]
    for platform in LAYER_PIP_PLATFORMS:
        command += ["--platform", platform]
    command += ["--only-binary=:all:", "--implementation", "cp"]
    command += ["--python-version", runtime_python_version()]
    command += ["-r", str(requirements), "--target", str(target)]
    if constraints.exists():
        command += ["-c", str(constraints)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
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
