"""A MONAI Label app that serves this project's trained segmentation bundles (``app.py``; the
MONAI Label server must be installed beside the project: ``pip install monailabel``).

MONAI Label loads an app from a folder holding ``main.py`` and writes its logs and caches into
that folder, so the app is not served from the installed package: :func:`prepare` writes a
working folder (default ``$XDG_CACHE_HOME/monai-crossdomain/label_app``) whose ``main.py``
imports the app, and ``python -m common.label_app [FOLDER]`` prepares it and prints its path::

    monailabel start_server --app "$(python -m common.label_app)" --studies STUDIES \\
        --conf bundles bundles/mi2gan,bundles/dadr

Each bundle is served by MONAI Label's own ``BundleInferTask`` from its ``inference.yaml``
(``network_def``, ``preprocessing``, ``inferer``, ``postprocessing``) and ``models/model.pt``, as
model ``<bundle folder name>``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MAIN", "default_app_dir", "prepare"]

MAIN = (
    '"""MONAI Label app folder of monai-crossdomain (written by python -m common.label_app)."""\n\n'
    "from common.label_app.app import CrossDomainApp  # noqa: F401\n"
)


def default_app_dir() -> Path:
    """The default working folder of the app: ``$XDG_CACHE_HOME/monai-crossdomain/label_app``
    (``~/.cache/...`` without ``XDG_CACHE_HOME``).

    Returns:
        The folder (not created).
    """
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "monai-crossdomain" / "label_app"


def prepare(app_dir: str | Path | None = None) -> Path:
    """Writes the app's working folder for ``monailabel start_server --app``: its ``main.py``
    imports the app from the installed package (written through a temporary file, then renamed).

    Args:
        app_dir: the folder; default :func:`default_app_dir`.

    Returns:
        The folder, absolute.
    """
    folder = Path(app_dir or default_app_dir()).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    main = folder / "main.py"
    if not main.is_file() or main.read_text() != MAIN:
        temporary = folder / f".main.py.{os.getpid()}.tmp"
        temporary.write_text(MAIN)
        temporary.replace(main)
    return folder
