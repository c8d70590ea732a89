"""The ``symgrad`` command's version and help text."""

import re
import subprocess
import sys

import pytest

import symgrad as sg
from symgrad import cli


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"symgrad {sg.__version__}"


def test_version_from_the_command_line_as_installed():
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from symgrad.cli import main; sys.exit(main())", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"symgrad {sg.__version__}"


def _help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    return capsys.readouterr().out


def test_help_describes_every_command_in_plain_text(capsys):
    text = _help(["--help"], capsys)
    for command in ("demo", "bench", "cache"):
        assert re.search(rf"^\s+{command}\s+\w", text, re.M), f"{command} is not described:\n{text}"
    assert "--version" in text
    # no reST markup: no double backquotes, roles or directives
    for help_text in [text, _help(["cache", "--help"], capsys), _help(["demo", "--help"], capsys)]:
        assert "``" not in help_text and not re.search(r":\w+:`", help_text) and ".. " not in help_text
    cache_text = _help(["cache", "--help"], capsys)
    assert "info:" in cache_text and "size" in cache_text and "clear:" in cache_text
