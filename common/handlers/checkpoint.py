"""Finding the checkpoint to resume from."""

from __future__ import annotations

from pathlib import Path

__all__ = ["latest_checkpoint"]


def latest_checkpoint(directory: str | Path, prefix: str = "resume") -> str:
    """The newest ``{prefix}*.pt`` in ``directory`` (MONAI ``CheckpointSaver`` names periodic
    checkpoints by epoch and the final one ``{prefix}.pt``).

    Args:
        directory: the checkpoint folder.
        prefix: the checkpoints' file prefix.

    Returns:
        The path of the newest checkpoint.

    Raises:
        FileNotFoundError: no checkpoint to resume from.
    """
    candidates = sorted(Path(directory).glob(f"{prefix}*.pt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(
            f"No checkpoint {prefix}*.pt in {directory} to resume from; train once without `resume` first."
        )
    return str(candidates[-1])
