"""``python -m common.bundle check BUNDLE [--monai-schema PATH] [--no-export]`` and
``python -m common.bundle export BUNDLE --out DIR [--data-license FILE] [--url-base URL]``."""

from __future__ import annotations

import argparse
import sys

from common.bundle.check import BundleCheckError, check_bundle
from common.bundle.export import export_bundle


def main(argv: list[str] | None = None) -> int:
    """Checks a bundle and prints one line per check (exit status 1 on the first failure), or
    exports a trained bundle as a zoo-ready zip and prints its path."""
    parser = argparse.ArgumentParser(prog="python -m common.bundle")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a bundle's layout, metadata, configs and network")
    check.add_argument("bundle", help="the bundle folder, e.g. bundles/cyclegan")
    check.add_argument("--monai-schema", default=None, help="MONAI's metadata schema (default: found in shared/monai)")
    check.add_argument("--no-export", action="store_true", help="skip the TorchScript export of models/model.pt")
    check.add_argument(
        "--overlay",
        action="append",
        default=[],
        help="config laid over inference.yaml (relative to the bundle), e.g. configs/quick.yaml",
    )
    export = commands.add_parser("export", help="write a trained bundle as a zoo-ready NAME_vVERSION.zip")
    export.add_argument("bundle", help="the trained bundle folder, e.g. bundles/cyclegan")
    export.add_argument("--out", required=True, help="the folder for the zip")
    export.add_argument(
        "--data-license", default=None, help="the training data's licence (default: the synthetic data's statement)"
    )
    export.add_argument("--url-base", default=None, help="where large_files.yml's files will be downloadable")
    args = parser.parse_args(argv)
    if args.command == "export":
        try:
            print(export_bundle(args.bundle, args.out, args.data_license, args.url_base))
        except ValueError as error:
            print(f"FAILED  {error}", file=sys.stderr)
            return 1
        return 0
    try:
        for line in check_bundle(args.bundle, args.monai_schema, export=not args.no_export, overlays=args.overlay):
            print(f"ok  {line}")
    except BundleCheckError as error:
        print(f"FAILED  {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
