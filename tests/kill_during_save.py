"""Runs ``python -m monai.bundle ARGS`` and kills itself (SIGKILL) halfway through writing the
Nth resume checkpoint of a stage: ``torch.save`` writes half of the checkpoint's bytes into the
temporary file, flushes them and the process kills itself, as a ``kill -9`` or a power cut in
the middle of a write would.

    python kill_during_save.py STAGE N -m monai.bundle ARGS...
"""

from __future__ import annotations

import io
import os
import runpy
import signal
import sys

import torch

STAGE, N = sys.argv[1], int(sys.argv[2])
_save, _count = torch.save, 0


def _dying_save(obj, file, *args, **kwargs):
    global _count
    if f"{os.sep}{STAGE}{os.sep}.resume.pt." in str(getattr(file, "name", file)):
        _count += 1
        if _count == N:
            buffer = io.BytesIO()
            _save(obj, buffer, *args, **kwargs)
            file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    return _save(obj, file, *args, **kwargs)


torch.save = _dying_save
assert sys.argv[3:5] == ["-m", "monai.bundle"], sys.argv
sys.argv = ["monai.bundle", *sys.argv[5:]]
runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
