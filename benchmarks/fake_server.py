"""The fake Lexware over real HTTP on 127.0.0.1, behind :class:`benchmarks.gate.Gate`.

``python -m benchmarks.fake_server PORT_FILE``, with ``DJANGO_SETTINGS_MODULE=benchmarks.settings``:
binds a free port, writes it to ``PORT_FILE`` and serves (Django's threaded WSGI server) until
the runner terminates it. ``LEXOFFICE_BENCH_TOKEN_RATE`` (requests per second) switches on the
gate's limit on the token endpoint; ``LEXOFFICE_BENCH_LIMIT_ALL=1`` extends it to every endpoint.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import django


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    django.setup()
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    from benchmarks.gate import Gate, HitLog, TokenBucket
    from benchmarks.settings import REDIS_URL

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """One line per request would cost more than the fake itself."""

    rate = os.environ.get("LEXOFFICE_BENCH_TOKEN_RATE")
    bucket = TokenBucket(float(rate)) if rate else None
    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    limit_all = os.environ.get("LEXOFFICE_BENCH_LIMIT_ALL") == "1"
    server.set_app(Gate(get_wsgi_application(), HitLog(REDIS_URL), bucket, limit_all=limit_all))
    port_file = Path(argv[1])
    port_file.with_suffix(".tmp").write_text(str(server.server_address[1]))
    port_file.with_suffix(".tmp").rename(port_file)  # appears complete or not at all
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
