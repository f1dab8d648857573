"""The headless Chromium every browser test launches (Debian's package, installed by `make browser`)."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> str:
    """Debian's chromium; installed here when missing (root on a fresh machine), else a clear skip."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=False, capture_output=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"], check=False, capture_output=True, env=env, timeout=900
        )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed and `apt-get install chromium` did not provide it")
    return CHROMIUM
