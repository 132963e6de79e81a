"""The benchmark's surroundings: its own database, the fake Lexware's HTTP server, worker processes.

Everything runs on 127.0.0.1; nothing here ever contacts Lexware.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_MODULE = "benchmarks.settings"
DEFAULT_DB = "bench_lexoffice"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
DEFAULT_PG = "127.0.0.1:5432"


@dataclass(frozen=True)
class Infra:
    """Where the run's services are; ``env()`` hands them to worker processes."""

    db_name: str
    pg: str
    redis_url: str
    fake_url: str
    workdir: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a worker process (settings, database, Redis, the fake's URL)."""
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "LEXOFFICE_BENCH_DB": self.db_name,
            "LEXOFFICE_BENCH_PG": self.pg,
            "LEXOFFICE_BENCH_REDIS_URL": self.redis_url,
            "LEXOFFICE_BENCH_FAKE_URL": self.fake_url,
            **extra,
        }

    def python(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start ``python ARGS`` in the repository with the worker environment."""
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env or self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def _admin_connection(pg: str) -> psycopg.Connection[tuple[object, ...]]:
    host, _, port = pg.partition(":")
    return psycopg.connect(
        host=host, port=int(port or 5432), user="postgres", dbname="postgres", autocommit=True
    )


@contextmanager
def database(name: str, pg: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for the run; dropped afterwards."""
    with _admin_connection(pg) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with _admin_connection(pg) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def wait_for_file(path: Path, timeout: float, process: subprocess.Popen[str] | None = None) -> None:
    """Wait (bounded) until ``path`` exists; fail early if ``process`` died."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process is not None and process.poll() is not None:
            _, err = process.communicate()
            raise RuntimeError(f"process {process.pid} exited before {path.name}: {err[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {path}")
        time.sleep(0.01)


def stop(process: subprocess.Popen[str], timeout: float = 10) -> None:
    """End one process we started (by its own handle, never by name)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


@contextmanager
def fake_server(
    infra_env: dict[str, str], workdir: Path, token_rate: float, *, limit_all: bool = False
) -> Iterator[str]:
    """Serve the fake Lexware over HTTP on 127.0.0.1; yields its base URL.

    ``token_rate`` limits the token endpoint, or with ``limit_all`` every endpoint together.
    """
    name = "fake-all" if limit_all else "fake"
    port_file = workdir / f"{name}-port"
    log = (workdir / f"{name}-server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fake_server", str(port_file)],
        cwd=ROOT,
        env={
            **infra_env,
            "LEXOFFICE_BENCH_TOKEN_RATE": str(token_rate),
            "LEXOFFICE_BENCH_LIMIT_ALL": "1" if limit_all else "",
        },
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        text=True,
    )
    try:
        wait_for_file(port_file, timeout=60, process=process)
        yield f"http://127.0.0.1:{port_file.read_text()}/fake-lexware"
    finally:
        stop(process)
        log.close()


@contextmanager
def workdir() -> Iterator[Path]:
    """A temporary directory for signal files and logs of one run."""
    with tempfile.TemporaryDirectory(prefix="lexoffice-bench-") as path:
        yield Path(path)


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    import django
    import social_core
    import social_django

    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": subprocess.run(
            ["nproc"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "free -h": free.rstrip(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "social-auth-core": getattr(social_core, "__version__", "?"),
        "social-auth-app-django": getattr(social_django, "__version__", "?"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"
