"""Check a built wheel and sdist: the files users need are in, the tests are not; and the
wheel, installed into a fresh virtualenv, runs the example project's checks and migrations.

Usage: python scripts/check_wheel.py DIST_DIR [--install]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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


def install_and_run_example(wheel: Path) -> int:
    """Install ``wheel`` in a fresh virtualenv and run the example project against it."""
    with tempfile.TemporaryDirectory() as tmp:
        env_dir = Path(tmp) / "venv"
        venv.create(env_dir, with_pip=True)
        python = str(env_dir / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheel)], check=True)
        env = {
            **os.environ,
            "LEXOFFICE_DEMO_DB": str(Path(tmp) / "db.sqlite3"),
            "LEXOFFICE_DEMO_DATA_DIR": str(Path(tmp) / "data"),
            "PYTHONPATH": "",
            "PYTHONDEVMODE": "",  # third-party deprecation noise is not this check's business
        }
        cwd = ROOT / "example_project"  # the repository root is not on sys.path here
        where = subprocess.run(
            [python, "-c", "import django_lexoffice; print(django_lexoffice.__file__)"],
            cwd=cwd,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not where.startswith(str(env_dir)):
            print(f"django_lexoffice was imported from {where}, not the wheel", file=sys.stderr)
            return 1
        for command in (["check"], ["migrate", "--verbosity", "0"]):
            subprocess.run([python, "manage.py", *command], cwd=cwd, env=env, check=True)
        print(f"{wheel.name}: installed in a fresh virtualenv; example project checks and migrates")
    return 0


if __name__ == "__main__":
    dist = Path(sys.argv[1])
    status = main(dist)
    if status == 0 and "--install" in sys.argv[2:]:
        status = install_and_run_example(sorted(dist.glob("django_lexoffice-*.whl"))[-1])
    sys.exit(status)
