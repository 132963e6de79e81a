#!/usr/bin/env python3
"""Run the django-lexoffice demo with one command, on a machine with only Python 3.11+::

    python3 example_project/demo.py            # http://127.0.0.1:8000
    python3 example_project/demo.py --port 8080

1. creates a virtualenv in ``.demo-venv/`` at the repository root (once),
2. ``pip install -e .`` there (again only when setup.cfg or pyproject.toml changed),
3. migrates the SQLite database ``example_project/db.sqlite3``,
4. creates the superuser ``admin`` with a random password if absent and prints it
   (``--reset-admin-password`` prints a new one later),
5. serves the site with ``runserver --noreload``.

Ctrl+C or ``kill <pid>`` (SIGTERM) of this launcher stops the server it started.

Safe to run again: every step skips what is already done. Without ``LEXOFFICE_CLIENT_ID`` in
the environment the demo uses the built-in fake Lexware; see ``demo_site/settings.py`` for the
variables that switch to Lexware's sandbox or production.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import venv
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent
REPO_DIR = PROJECT_DIR.parent
VENV_DIR = REPO_DIR / ".demo-venv"
STAMP = VENV_DIR / ".django-lexoffice-install"
ADMIN_USERNAME = "admin"
MIN_PYTHON = (3, 11)
#: Signals that stop the launcher, and with it the server it started.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Seconds the server gets to stop by itself before it is terminated, then killed.
STOP_GRACE = 5.0


def say(message: str) -> None:
    """Print a progress line."""
    print(f"[demo] {message}", flush=True)


def venv_python() -> Path:
    """The virtualenv's interpreter (POSIX or Windows layout)."""
    for candidate in (VENV_DIR / "bin" / "python", VENV_DIR / "Scripts" / "python.exe"):
        if candidate.exists():
            return candidate
    return VENV_DIR / "bin" / "python"


def in_demo_venv() -> bool:
    """Whether this interpreter is the demo's virtualenv."""
    return Path(sys.prefix).resolve() == VENV_DIR.resolve()


def install_fingerprint() -> str:
    """Changes whenever the package metadata (and so its dependencies) change."""
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml"):
        path = REPO_DIR / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv() -> Path:
    """Create ``.demo-venv`` and install the repository into it, unless already done."""
    python = venv_python()
    if not python.exists():
        say(f"Creating a virtualenv in {VENV_DIR} ...")
        try:
            venv.EnvBuilder(with_pip=True, upgrade_deps=False).create(VENV_DIR)
        except (OSError, subprocess.CalledProcessError) as exc:
            sys.exit(
                f"Cannot create the virtualenv ({exc}). On Debian/Ubuntu install the "
                "python3-venv package first."
            )
        python = venv_python()
    fingerprint = install_fingerprint()
    if not STAMP.exists() or STAMP.read_text(encoding="utf-8").strip() != fingerprint:
        say("Installing django-lexoffice and its dependencies (pip install -e .) ...")
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-e", str(REPO_DIR)],
            check=True,
            env=env,
        )
        STAMP.write_text(fingerprint + "\n", encoding="utf-8")
    return python


class _Stop(Exception):
    """Raised in the launcher by a stop signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signum)


def run_child(command: list[str], *, grace: float = STOP_GRACE) -> int:
    """Run ``command`` and return its exit status; a stop signal stops it too.

    Without this, ``kill <launcher pid>`` left the server running and holding the port.
    Ctrl+C reaches the whole process group, so the child first gets ``grace`` seconds to
    stop by itself; then it is terminated, and killed if it still runs.
    """
    child = subprocess.Popen(command)
    previous = {signum: signal.signal(signum, _raise_stop) for signum in STOP_SIGNALS}
    try:
        try:
            return child.wait()
        except _Stop as stop:
            signum = stop.signum
        for ignored in STOP_SIGNALS:  # a second Ctrl+C must not cut the clean-up short
            signal.signal(ignored, signal.SIG_IGN)
        if signum != signal.SIGINT:
            child.terminate()
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            child.terminate()
            try:
                child.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return 128 + signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def ensure_admin(reset_password: bool) -> str | None:
    """Create the superuser ``admin`` if absent; return its new password, if one was set."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user = user_model.objects.filter(**{user_model.USERNAME_FIELD: ADMIN_USERNAME}).first()
    if user is not None and not reset_password:
        return None
    password = secrets.token_urlsafe(12)
    if user is None:
        user_model.objects.create_superuser(ADMIN_USERNAME, "admin@example.com", password)
    else:
        user.set_password(password)
        user.save(update_fields=["password"])
    return password


def serve(port: int, reset_admin_password: bool) -> None:
    """Migrate, make sure the admin exists, print the credentials and run the server."""
    sys.path.insert(0, str(PROJECT_DIR))
    os.environ["DJANGO_SETTINGS_MODULE"] = "demo_site.settings"
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    from django_lexoffice.conf import settings as lexoffice_settings

    say("Migrating the database ...")
    call_command("migrate", interactive=False, verbosity=0)
    password = ensure_admin(reset_admin_password)
    url = os.environ["LEXOFFICE_DEMO_URL"]
    lines = [
        "",
        f"  django-lexoffice demo:  {url}/",
        f"  Django admin:           {url}/admin/",
        f"  Admin user:             {ADMIN_USERNAME}",
    ]
    if password:
        lines.append(f"  Admin password:         {password}   (shown once; keep it)")
    else:
        lines.append(
            "  Admin password:         as printed on the first run "
            "(new one: demo.py --reset-admin-password)"
        )
    if settings.DEMO_FAKE_LEXWARE:
        lexware = "the built-in fake at /fake-lexware/ (no account needed)"
    else:
        lexware = f"{lexoffice_settings.AUTH_BASE_URL} (client {lexoffice_settings.CLIENT_ID})"
    lines.append(f"  Lexware:                {lexware}")
    print("\n".join([*lines, "", "  Stop with Ctrl+C.", ""]), flush=True)
    call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)


def main(argv: list[str] | None = None) -> None:
    """Bootstrap the virtualenv with any Python, then continue inside it."""
    parser = argparse.ArgumentParser(description="Run the django-lexoffice demo site.")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    parser.add_argument(
        "--reset-admin-password",
        action="store_true",
        help="give the admin user a new random password and print it",
    )
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if sys.version_info < MIN_PYTHON:
        sys.exit("The demo needs Python 3.11 or newer.")
    os.environ["LEXOFFICE_DEMO_URL"] = f"http://127.0.0.1:{args.port}"
    if not in_demo_venv():
        python = ensure_venv()
        command = [str(python), str(Path(__file__).resolve()), *argv]
        sys.exit(run_child(command))
    try:
        serve(args.port, args.reset_admin_password)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
