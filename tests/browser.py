"""What the real-browser tests share: Debian's Chromium, where screenshots go, the demo."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.dot_server.live import REPO_DIR, child_env, free_port, run_checked, start_server

#: Debian's Chromium (``apt-get install chromium``); never a downloaded browser.
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots land here (git-ignored).
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

MANAGE = str(REPO_DIR / "example_project" / "manage.py")
#: The demo's superuser.
DEMO_ADMIN = "admin"


@dataclass(frozen=True)
class Demo:
    """The running example project."""

    url: str
    admin_password: str
    #: Its SQLite database file.
    database: Path


@contextmanager
def running_demo(tmp: Path) -> Iterator[Demo]:
    """The example project, migrated, with a superuser, served by ``runserver`` on a free port
    with a fresh database and data directory, exactly as ``example_project/demo.py`` serves it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    password = secrets.token_urlsafe(12)
    database = tmp / "db.sqlite3"
    env = child_env(
        DJANGO_SETTINGS_MODULE="demo_site.settings",
        LEXOFFICE_DEMO_URL=url,
        LEXOFFICE_DEMO_DB=str(database),
        LEXOFFICE_DEMO_DATA_DIR=str(tmp / "data"),
        DJANGO_SUPERUSER_PASSWORD=password,
    )
    run_checked([MANAGE, "migrate", "--noinput", "-v0"], env=env, what="Migrating the demo")
    run_checked(
        [
            MANAGE,
            "createsuperuser",
            "--noinput",
            "--username",
            DEMO_ADMIN,
            "--email",
            "admin@example.com",
        ],
        env=env,
        what="Creating the demo superuser",
    )
    server = start_server(
        "The example project",
        [MANAGE, "runserver", f"127.0.0.1:{port}", "--noreload"],
        port=port,
        env=env,
        log_path=tmp / "runserver.log",
    )
    try:
        yield Demo(url, password, database)
    finally:
        server.stop()
