"""The throw-away copy of a cdk.json stage, chosen the way `cdk -c jwtkeys:stage=...
-c jwtkeys:suffix=...` chooses it (the same infra code)."""

from __future__ import annotations

import json
from pathlib import Path

from infra.config import KeysetConfig, load_stacks, select_stacks
from infra.constants import CONTEXT_KEY
from jwtkeys_tools.live.context import Plan

# The subject and audience the suite asks tokens for, when the stage's allowlist
# entry is a pattern.
LIVE_NAME = "jwtkeys-live-smoke"


def stage_config(project_root: Path, stage: str, suffix: str) -> KeysetConfig:
    """The suffixed stage from the project's cdk.json (ConfigurationError naming the fault)."""
    context = json.loads((project_root / "cdk.json").read_text())["context"][CONTEXT_KEY]
    return select_stacks(load_stacks(context), stage, suffix)[0]


def plan_for(config: KeysetConfig, suffix: str) -> Plan:
    return Plan(
        stage=config.stage,
        suffix=suffix,
        stack_name=config.stack_name,
        keyset=config.keyset,
        issuer=config.issuer,
        subject=_concrete(config.allowed_subjects[0]),
        audience=_concrete(config.allowed_audiences[0]),
        direct_invoke=config.direct_invoke is not None,
        max_token_ttl=config.policy.max_token_ttl,
    )


def _concrete(allowed: str) -> str:
    # An allowlist entry is a name or a `*` pattern; any name the pattern admits will do.
    return allowed.replace("*", LIVE_NAME)
