"""``example_project/demo.py``: stopping the launcher stops the server it started; the favicon.

The launcher runs the demo in its own virtualenv as a child process. These tests give it a
small HTTP server as the child instead (the real one needs ``pip install``), and check that
the port is free again after Ctrl+C or ``kill``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import RequestFactory

from tests.dot_server.live import REPO_DIR, free_port

EXAMPLE_DIR = REPO_DIR / "example_project"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

LAUNCHER = """
import sys
sys.path.insert(0, {example!r})
import demo
server = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", {port!r}]
sys.exit(demo.run_child(server, grace=1.0))
"""


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_for(predicate, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _start_launcher(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER.format(example=str(EXAMPLE_DIR), port=str(port)), encoding="utf-8")
    launcher = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: a signal to it reaches only it
    )
    assert _wait_for(lambda: _port_open(port)), "the child server never listened"
    return launcher, port


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 128 + signal.SIGINT)],
    ids=["kill", "ctrl-c-to-the-launcher-only"],
)
def test_stopping_the_demo_launcher_stops_its_server(tmp_path, signum, status):
    launcher, port = _start_launcher(tmp_path)
    try:
        launcher.send_signal(signum)
        assert launcher.wait(timeout=15) == status
        assert _wait_for(lambda: not _port_open(port), timeout=5), "the server kept the port"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_ctrl_c_in_the_terminal_stops_launcher_and_server(tmp_path):
    launcher, port = _start_launcher(tmp_path)
    try:
        os.killpg(launcher.pid, signal.SIGINT)  # what the terminal does: the whole group
        assert launcher.wait(timeout=15) == 128 + signal.SIGINT
        assert _wait_for(lambda: not _port_open(port), timeout=5)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_launcher_returns_the_servers_exit_status():
    sys.path.insert(0, str(EXAMPLE_DIR))
    try:
        import demo
    finally:
        sys.path.remove(str(EXAMPLE_DIR))
    # Not SIG_DFL: under coverage (sigterm = true) its own SIGTERM handler is installed.
    before = {signum: signal.getsignal(signum) for signum in demo.STOP_SIGNALS}
    assert demo.run_child([sys.executable, "-c", "raise SystemExit(3)"]) == 3
    after = {signum: signal.getsignal(signum) for signum in demo.STOP_SIGNALS}
    assert after == before  # handlers restored


def test_demo_serves_a_favicon():
    sys.path.insert(0, str(EXAMPLE_DIR))
    try:
        from demo_site import views
    finally:
        sys.path.remove(str(EXAMPLE_DIR))
    response = views.favicon(RequestFactory().get("/favicon.ico"))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")
