"""Preparation of the public datasets of the papers into datalists (DESIGN.md sections 6-7).

``python -m common.data.prepare DATASET --raw DIR --out DIR [options]`` checks the raw layout
(one line per missing or unreadable file), converts the files the bundles read, and writes the
datalist atomically (a temporary file, then a rename), with the intensity normalisation that
training and inference read. A run is idempotent: running it again writes the same files.

A cross-centre task built from two datasets is prepared one dataset at a time into one output
folder: each writes its part (``OUT/<dataset>/part.json``), and the task's ``OUT/datalist.json``
is written once both parts are there (e.g. ``cvc_clinic`` as the source centre and
``etis_larib`` as the target: the MI2GAN polyp task). A task whose domains can swap roles gets a
datalist per direction (``datalist.json`` in the papers' main direction, e.g.
``datalist_ct_to_mr.json`` for the other); a target's training and validation entries never
carry labels.

Datasets (:data:`DATASETS`): ``cvc_clinic``, ``etis_larib`` (polyp), ``refuge`` (fundus),
``mmwhs``, ``mmwhs_sifa`` (cardiac), ``btcv``, ``chaos`` (abdomen), ``lits``, ``chaos_liver``
(liver), ``brats`` (RegGAN's T1/T2 pairs). Volumes are reoriented to RAS (slices along the last
axis, as the bundles cut them).
"""

from common.data.prepare import abdomen, brain, mmwhs, polyp, refuge  # noqa: F401  (they register their datasets)
from common.data.prepare.core import DATASETS, RawLayoutError, prepare

__all__ = ["prepare", "DATASETS", "RawLayoutError"]
