"""Check a built wheel and sdist: the files users need are in, the tests are not.

Usage: python scripts/check_wheel.py DIST_DIR
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

REQUIRED_IN_WHEEL = [
    "django_lexoffice/py.typed",
    "django_lexoffice/migrations/0001_initial.py",
    "django_lexoffice/templates/django_lexoffice/base.html",
    "django_lexoffice/templates/django_lexoffice/login.html",
    "django_lexoffice/templates/django_lexoffice/callback_error.html",
    "django_lexoffice/templates/django_lexoffice/connections.html",
    "django_lexoffice/locale/de/LC_MESSAGES/django.po",
    "django_lexoffice/locale/de/LC_MESSAGES/django.mo",
    "django_lexoffice/management/commands/refresh_lexoffice_tokens.py",
    "django_lexoffice/testing/__init__.py",
]


def main(dist: Path) -> int:
    problems: list[str] = []
    wheels = sorted(dist.glob("django_lexoffice-*.whl"))
    sdists = sorted(dist.glob("django_lexoffice-*.tar.gz"))
    if not wheels or not sdists:
        print(f"no wheel or sdist in {dist}", file=sys.stderr)
        return 1
    names = set(zipfile.ZipFile(wheels[-1]).namelist())
    problems += [f"wheel lacks {name}" for name in REQUIRED_IN_WHEEL if name not in names]
    problems += [f"wheel ships test file {name}" for name in names if name.startswith("tests/")]
    problems += [
        "wheel lacks the fake Lexware's templates"
        for _ in [0]
        if not any(
            name.startswith("django_lexoffice/templates/django_lexoffice/fake/") for name in names
        )
    ]
    with tarfile.open(sdists[-1]) as sdist:
        members = {member.name.split("/", 1)[-1] for member in sdist.getmembers()}
    problems += [
        f"sdist lacks {name}"
        for name in ("README.rst", "CHANGELOG.rst", "LICENSE")
        if name not in members
    ]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{wheels[-1].name}: {len(names)} files, all required files present, no tests")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
