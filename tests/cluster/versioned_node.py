"""A node of the rolling-upgrade test: runs the release whose ``src/`` the file ``code`` in its directory
names (the launcher runs a node in its own directory), or ``$TN_DEFAULT_SRC`` while there is none."""

from __future__ import annotations

import os
import sys
from pathlib import Path

choice = Path("code")
source = choice.read_text().strip() if choice.exists() else os.environ["TN_DEFAULT_SRC"]
os.execve(sys.executable, [sys.executable, "-m", "talentnest", "node"], {**os.environ, "PYTHONPATH": source})
