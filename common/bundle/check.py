"""Checks of a bundle: layout, metadata, configs, the inference network and its export.

``python -m common.bundle check bundles/NAME [--monai-schema PATH]``:

1. the required files exist;
2. ``configs/metadata.json`` validates against this project's schema (``metadata_schema.json``,
   written from the MONAI Bundle specification) and, when found, against MONAI's published
   schema (``--monai-schema``, or ``shared/monai/meta_schema_*.json`` beside the repository);
   the changelog has an entry for the current version;
3. every config file parses;
4. ``network_def`` of ``inference.yaml`` instantiates and passes MONAI's ``verify_net_in_out``
   against the metadata's input and output formats with the model zoo's values (``verify_bundle.py
   -m full``: MONAI's defaults ``n = p = any = 1``, the smallest input the metadata allows) and a
   larger input (``n = 16``, ``any = 8``), in evaluation mode as the zoo runs it, and once more in
   training mode (a batch of two at the smallest input: normalisation layers that need more than
   one value fail there too);
5. when ``models/model.pt`` exists, it loads into ``network_def`` and is exported to
   TorchScript (``models/model.ts``) with MONAI's ``ckpt_export``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jsonschema
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out
from monai.bundle.scripts import _get_fake_spatial_shape, _get_net_io_info

__all__ = ["REQUIRED_FILES", "BundleCheckError", "check_bundle", "find_monai_schema"]

logger = logging.getLogger(__name__)

REQUIRED_FILES = (
    "configs/metadata.json",
    "configs/train.yaml",
    "configs/quick.yaml",
    "configs/evaluate.yaml",
    "configs/inference.yaml",
    "configs/multi_gpu_train.yaml",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
)
SCHEMA = Path(__file__).with_name("metadata_schema.json")
# verify_net_in_out's shape values: the model zoo's (MONAI's defaults, the smallest input) and a larger one
SHAPE_VALUES = ({"p": 1, "n": 1, "any": 1}, {"p": 1, "n": 16, "any": 8})


class BundleCheckError(ValueError):
    """A bundle that fails a check; the message names the file and what was expected."""


def find_monai_schema(bundle: Path) -> Path | None:
    """MONAI's published metadata schema in a ``shared/monai`` folder beside an ancestor, if any.

    Args:
        bundle: the bundle folder.

    Returns:
        The newest ``meta_schema_*.json`` found, or ``None``.
    """
    for parent in bundle.resolve().parents:
        schemas = sorted((parent / "shared" / "monai").glob("meta_schema_*.json"))
        if schemas:
            return schemas[-1]
    return None


def check_bundle(
    bundle: str | Path, monai_schema: str | Path | None = None, export: bool = True, overlays: list[str] | None = None
) -> list[str]:
    """Runs every check on a bundle.

    Args:
        bundle: the bundle folder.
        monai_schema: MONAI's metadata schema (default: :func:`find_monai_schema`).
        export: export ``models/model.pt`` to TorchScript when it exists.
        overlays: config files (relative to the bundle) laid over ``inference.yaml``, e.g.
            ``["configs/quick.yaml"]`` for weights trained with it.

    Returns:
        One line per check that passed.

    Raises:
        BundleCheckError: the first check that fails.
    """
    bundle = Path(bundle)
    passed = []
    missing = [name for name in REQUIRED_FILES if not (bundle / name).is_file()]
    if missing:
        raise BundleCheckError(f"{bundle}: missing required files: {', '.join(missing)}")
    passed.append(f"required files: {len(REQUIRED_FILES)} present")

    meta_file = bundle / "configs" / "metadata.json"
    try:
        metadata = json.loads(meta_file.read_text())
    except json.JSONDecodeError as error:
        raise BundleCheckError(f"{meta_file}: not valid JSON ({error})") from error
    schemas = [("project schema", SCHEMA)]
    monai_schema = Path(monai_schema) if monai_schema else find_monai_schema(bundle)
    if monai_schema is not None:
        schemas.append(("MONAI schema", monai_schema))
    for label, schema_path in schemas:
        try:
            jsonschema.validate(metadata, json.loads(Path(schema_path).read_text()))
        except jsonschema.ValidationError as error:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            raise BundleCheckError(f"{meta_file}: {where}: {error.message} ({label} {schema_path})") from None
        passed.append(f"metadata valid against the {label} ({schema_path.name})")
    if metadata["version"] not in metadata["changelog"]:
        raise BundleCheckError(f"{meta_file}: changelog has no entry for version {metadata['version']}")

    configs = sorted((bundle / "configs").glob("*.yaml"))
    for config in configs:
        try:
            ConfigParser.load_config_file(config)
        except Exception as error:  # yaml and MONAI raise several types
            raise BundleCheckError(f"{config}: does not parse ({error})") from error
    passed.append(f"configs parse: {', '.join(c.name for c in configs)}")

    inference = [str(bundle / "configs" / "inference.yaml"), *(str(bundle / o) for o in overlays or [])]
    parser = ConfigParser()
    parser.read_config(inference)
    parser.read_meta(str(meta_file))
    parser["bundle_root"] = str(bundle)
    try:
        network = parser.get_parsed_content("network_def")
    except Exception as error:
        raise BundleCheckError(f"{inference[0]}: network_def does not instantiate ({error})") from error
    for values in SHAPE_VALUES:
        try:
            verify_net_in_out(
                net_id="network_def",
                meta_file=str(meta_file),
                config_file=inference,
                device="cpu",
                bundle_root=str(bundle),
                **values,
            )
        except Exception as error:
            raise BundleCheckError(
                f"{inference[0]}: network_def does not match network_data_format at {values} ({error})"
            ) from error
    channels, spatial_shape, dtype, _, _ = _get_net_io_info(parser=parser)
    smallest = _get_fake_spatial_shape(spatial_shape, **SHAPE_VALUES[0])
    try:
        with torch.no_grad():
            network.train()(torch.rand(2, channels, *smallest, dtype=dtype))
    except Exception as error:
        raise BundleCheckError(
            f"{inference[0]}: network_def fails in training mode on a batch of 2 x {channels} x "
            f"{' x '.join(map(str, smallest))} ({error})"
        ) from error
    network.eval()
    passed.append(
        f"network_def {type(network).__name__} matches network_data_format (n = 1 and 16, "
        "evaluation and training mode)"
    )

    weights = bundle / "models" / "model.pt"
    if export and weights.is_file():
        state = torch.load(weights, map_location="cpu", weights_only=True)
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            raise BundleCheckError(f"{weights}: not a state_dict of network_def ({error})") from error
        try:
            ckpt_export(
                net_id="network_def",
                filepath=str(bundle / "models" / "model.ts"),
                ckpt_file=str(weights),
                meta_file=str(meta_file),
                config_file=inference,
                bundle_root=str(bundle),
            )
        except Exception as error:  # TorchScript raises several types
            raise BundleCheckError(f"{weights}: TorchScript export of network_def failed ({error})") from error
        passed.append("models/model.pt loads into network_def and exports to models/model.ts")
    return passed
