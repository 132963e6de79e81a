"""Run a Django development server in a subprocess for the duration of a test module.

Robust on purpose: a free port, a readiness poll with a timeout that notices a crashed
process, output captured to a log file whose tail is shown on failure, and a ``stop`` that
always reaps the process (terminate, then kill).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO_DIR = Path(__file__).resolve().parents[2]
#: Variables of the test process a child server must not inherit.
_NOT_INHERITED = ("DJANGO_SETTINGS_MODULE", "LEXOFFICE_CLIENT_ID", "LEXOFFICE_CLIENT_SECRET")


@dataclass
class ServerProcess:
    """A running server: its base URL, process and log file."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        """Terminate the server and reap it (kill after 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The test process' environment, minus its Django settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key not in _NOT_INHERITED}
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_DIR), os.environ.get("PYTHONPATH", "")) if part
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (empty if there is none)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_checked(
    args: Sequence[str], *, env: Mapping[str, str], what: str, timeout: float = 120
) -> None:
    """Run a setup command (``migrate`` ...); fail the test with its output if it fails."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=REPO_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}",
            pytrace=False,
        )


def start_server(
    name: str,
    args: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    log_path: Path,
    ready_path: str = "/",
    timeout: float = 30,
) -> ServerProcess:
    """Start ``python args...`` and wait until ``ready_path`` answers (any status below 500)."""
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_DIR,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(name, url, process, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            server.stop()
            pytest.fail(
                f"{name} exited with status {process.returncode} before answering:\n"
                f"{log_tail(log_path)}",
                pytrace=False,
            )
        try:
            with requests.get(url + ready_path, timeout=2, allow_redirects=False) as response:
                if response.status_code < 500:
                    return server
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(
                f"{name} did not answer on {url}{ready_path} within {timeout:.0f} s:\n"
                f"{log_tail(log_path)}",
                pytrace=False,
            )
        time.sleep(0.1)
