"""``python -m common.bundle check BUNDLE [--monai-schema PATH] [--no-export]``."""

from __future__ import annotations

import argparse
import sys

from common.bundle.check import BundleCheckError, check_bundle


def main(argv: list[str] | None = None) -> int:
    """Checks a bundle and prints one line per check; exit status 1 on the first failure."""
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
    args = parser.parse_args(argv)
    try:
        for line in check_bundle(args.bundle, args.monai_schema, export=not args.no_export, overlays=args.overlay):
            print(f"ok  {line}")
    except BundleCheckError as error:
        print(f"FAILED  {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
