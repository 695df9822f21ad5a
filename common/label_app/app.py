"""The MONAI Label app of Cross-Domain Bundles: serves trained segmentation bundles, each with
MONAI Label's ``BundleInferTask`` (no training, no zoo download, no SAM2: nothing leaves the
machine). Configuration (``--conf KEY VALUE``):

- ``bundles``: comma-separated bundle folders, each trained (``models/model.pt``); served as
  models named after their folders.
- ``preload``: ``true`` to load the networks at start-up.

Loaded by the MONAI Label server through the ``main.py`` of a working folder that
:func:`common.label_app.prepare` writes (``monailabel start_server --app``); it needs
``monailabel`` installed beside the project.
"""

from __future__ import annotations

import logging
from pathlib import Path

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.infer.bundle import BundleInferTask

import common

logger = logging.getLogger(__name__)


def served_bundles(conf: dict[str, str]) -> dict[str, str]:
    """The bundles named by ``conf["bundles"]``, checked before the server starts.

    Args:
        conf: the app's configuration.

    Returns:
        ``{model name (the bundle folder's name): bundle folder}``.

    Raises:
        ValueError: no bundle named, or one that is not a trained bundle (one line naming it).
    """
    paths = [p.strip() for p in conf.get("bundles", "").split(",") if p.strip()]
    if not paths:
        raise ValueError("Name the bundles to serve: --conf bundles PATH[,PATH...] (trained bundle folders).")
    bundles: dict[str, str] = {}
    for path in map(Path, paths):
        for needed in ("configs/inference.yaml", "configs/metadata.json", "models/model.pt"):
            if not (path / needed).is_file():
                raise ValueError(f"--conf bundles: {path} has no {needed} (expected a trained bundle folder).")
        name = path.resolve().name
        if name in bundles:
            raise ValueError(f"--conf bundles: two bundles named {name!r} ({bundles[name]} and {path}).")
        bundles[name] = str(path.resolve())
    return bundles


class CrossDomainApp(MONAILabelApp):
    """Serves the bundles of ``--conf bundles`` for inference.

    Args:
        app_dir: this folder.
        studies: the studies folder (the datastore).
        conf: the ``--conf`` values.
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.bundles = served_bundles(conf)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="Cross-Domain Bundles",
            description="Segmentation bundles adapted across domains without target labels (monai-crossdomain)",
            version=common.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        """One MONAI Label ``BundleInferTask`` per bundle.

        Returns:
            ``{model name: task}``.

        Raises:
            ValueError: a bundle MONAI Label cannot load.
        """
        infers: dict[str, InferTask] = {}
        for name, path in self.bundles.items():
            task = BundleInferTask(path, self.conf)
            if not task.is_valid():
                raise ValueError(f"MONAI Label cannot load the bundle {path} (see the log above).")
            logger.info("Serving %s as model %r", path, name)
            infers[name] = task
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        """No training from MONAI Label: the bundles train with ``python -m monai.bundle run training``.

        Returns:
            No trainer.
        """
        return {}

    def init_strategies(self) -> dict[str, Strategy]:
        """The first unlabelled image next.

        Returns:
            ``{"first": First()}``.
        """
        return {"first": First()}
