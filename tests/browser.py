"""What the real-browser tests share: Debian's Chromium and where screenshots go."""

from __future__ import annotations

import shutil
from pathlib import Path

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
