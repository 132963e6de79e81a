"""The testing examples of the README and docs/testing.rst run as written, in a fresh pytest.

Each ``.. code-block::`` of the section whose first line names a file (``# conftest.py``) is
written to that file; ``mysite.settings`` becomes this suite's settings module. So the
examples cannot drift from what the fake and its fixtures do.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^\.\. code-block:: \w+\n\n((?:(?: {4}.*)?\n)+)", re.MULTILINE)
NAMED = re.compile(r"# ([\w.]+\.(?:py|ini))\n")


def example_files(document: str, first_heading: str, next_heading: str) -> dict[str, str]:
    text = (ROOT / document).read_text(encoding="utf-8")
    section = text[text.index(first_heading) : text.index(next_heading)]
    files: dict[str, str] = {}
    for block in BLOCK.findall(section):
        code = textwrap.dedent(block)
        name = NAMED.match(code)
        if name:
            files[name.group(1)] = code.replace("mysite.settings", "tests.settings")
    return files


@pytest.mark.parametrize(
    ("document", "first_heading", "next_heading", "expected"),
    [
        ("README.rst", "Testing your code", "\nSecurity\n", 3),
        ("docs/testing.rst", "\nIn pytest\n", "\nFixtures\n", 4),
    ],
    ids=["readme", "docs"],
)
def test_testing_example_runs_as_written(
    tmp_path: Path, document: str, first_heading: str, next_heading: str, expected: int
) -> None:
    files = example_files(document, first_heading, next_heading)
    assert {"pytest.ini", "conftest.py"} <= set(files)
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    env["LEXOFFICE_TEST_DB"] = "sqlite"  # its own in-memory database, never this run's
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{expected} passed" in result.stdout
