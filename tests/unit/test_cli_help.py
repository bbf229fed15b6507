"""`jwtkeys --help` says what jwtkeys is, in one line."""

from __future__ import annotations

import pytest

from jwtkeys_tools.cli import build_parser, main


def test_the_description_is_one_line_about_jwtkeys(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    description = build_parser().description
    assert description is not None
    assert "\n" not in description
    assert description.startswith("jwtkeys ")
    assert description in " ".join(capsys.readouterr().out.split())
