"""A MONAI Label app that serves this project's trained segmentation bundles (``main.py``, loaded
by the MONAI Label server, which must be installed beside the project: ``pip install
monailabel``). ``python -m common.label_app`` prints the app's folder, for ``--app``::

    monailabel start_server --app "$(python -m common.label_app)" --studies STUDIES \\
        --conf bundles bundles/mi2gan,bundles/dadr

Each bundle is served by MONAI Label's own ``BundleInferTask`` from its ``inference.yaml``
(``network_def``, ``preprocessing``, ``inferer``, ``postprocessing``) and ``models/model.pt``, as
model ``<bundle folder name>``."""

from pathlib import Path

__all__ = ["APP_DIR"]

APP_DIR = Path(__file__).resolve().parent
