"""A folder laid out like Lambda's /opt: the core layer and the dependency layer's code.

Lambda extracts layers read-only, so Python finds no `__pycache__` it can use or write
and compiles every module it imports at every cold start, unless the layer ships
bytecode for the runtime's exact Python. The dependency layer is built for arm64 (its
compiled extensions cannot load here), so its packages are copied from this
environment's installed distributions instead: the same pure-Python code, which is
what compiling costs.
"""

from __future__ import annotations

import compileall
import importlib.metadata as metadata
import re
import shutil
from pathlib import Path

from infra.constants import DEPS_REQUIREMENTS
from infra.layers import stage_core_layer

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def _requirement_name(requirement: str) -> str | None:
    if "extra ==" in requirement:
        return None
    match = _NAME.match(requirement.strip())
    return match.group(0) if match else None


def dependency_closure(requirements: Path = DEPS_REQUIREMENTS) -> list[metadata.Distribution]:
    """The installed distributions the dependency layer holds (its pins and their deps)."""
    pending = [
        name
        for line in requirements.read_text().splitlines()
        if (name := _requirement_name(line.split("#", 1)[0]))
    ]
    found: dict[str, metadata.Distribution] = {}
    while pending:
        distribution = metadata.distribution(pending.pop())
        key = distribution.metadata["Name"].lower().replace("_", "-")
        if key in found:
            continue
        found[key] = distribution
        pending.extend(
            name
            for requirement in distribution.requires or []
            if (name := _requirement_name(requirement))
        )
    return [found[key] for key in sorted(found)]


def stage_opt(target: Path, *, bytecode: bool = False) -> Path:
    """Fill `target/python` as Lambda's /opt/python would be; return that folder.

    Without `bytecode`, no .pyc anywhere (what the layers ship today); with it, every
    module compiled by this interpreter, as a layer built with the runtime's Python
    would ship them.
    """
    stage_core_layer(target)
    python = target / "python"
    for distribution in dependency_closure():
        for file in distribution.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts or file.suffix == ".pyc":
                continue  # console scripts outside site-packages; this machine's bytecode
            source = Path(str(distribution.locate_file(file)))
            if source.is_file():
                destination = python / file
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)
    if bytecode:
        compileall.compile_dir(python, quiet=1, workers=1)
    return python
