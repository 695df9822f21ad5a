"""Bundle tooling: the metadata schema and ``python -m common.bundle check BUNDLE``."""

from common.bundle.check import REQUIRED_FILES, BundleCheckError, check_bundle, find_monai_schema

__all__ = ["REQUIRED_FILES", "BundleCheckError", "check_bundle", "find_monai_schema"]
