#!/usr/bin/env python3
"""CDK app entry: one jwtkeys stack per keyset configured in cdk.json's context."""

from __future__ import annotations

from aws_cdk import App

from infra.stack import build_app


def main() -> None:
    app = App()
    build_app(app)
    app.synth()


if __name__ == "__main__":
    main()
