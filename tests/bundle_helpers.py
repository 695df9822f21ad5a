"""Running a bundle as users do, through `python -m monai.bundle`, for the bundle tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def bundle_run(root: Path, run_id: str | None, configs: list[str], *extra: str, launcher: list[str] | None = None) -> str:
    """Runs ``python -m monai.bundle run [RUN_ID]`` in ``root``; fails the test on a non-zero exit.

    Returns:
        The combined output.
    """
    command = [*(launcher or [sys.executable]), "-m", "monai.bundle", "run", *([run_id] if run_id else []),
               "--config_file", str(configs), "--meta_file", "configs/metadata.json", "--bundle_root", ".",
               "--logging_file", "configs/logging.conf", *extra]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr
