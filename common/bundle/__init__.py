"""Bundle tooling: the metadata schema, ``python -m common.bundle check BUNDLE``, ``python -m
common.bundle export BUNDLE --out DIR`` and the settings a trained bundle records for its
inference (``common.bundle.settings``)."""

from common.bundle.check import REQUIRED_FILES, BundleCheckError, check_bundle, find_monai_schema
from common.bundle.export import export_bundle
from common.bundle.settings import (
    SETTINGS_FILENAME,
    ReleaseCheckpointLoader,
    bundle_relative,
    load_release,
    read_settings,
    record_settings,
    trained,
)

__all__ = [
    "REQUIRED_FILES",
    "BundleCheckError",
    "check_bundle",
    "export_bundle",
    "find_monai_schema",
    "SETTINGS_FILENAME",
    "ReleaseCheckpointLoader",
    "bundle_relative",
    "load_release",
    "read_settings",
    "record_settings",
    "trained",
]
