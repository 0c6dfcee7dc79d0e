"""SeaweedFS for the tests: the same local server `make demo STORAGE=s3` starts (scripts/local_s3.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from local_s3 import SeaweedServer, weed_binary  # noqa: E402 - the script folder is not a package

__all__ = ["SeaweedServer", "weed_binary"]
