"""Run every benchmark and print one table: ``python benchmarks/run.py [--quick]``.

Needs PostgreSQL (user ``postgres``, trust) and Redis on 127.0.0.1; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.runner import main

    sys.exit(main(sys.argv[1:]))
