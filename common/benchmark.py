"""Benchmarks that write JSON: ``python -m common.benchmark train-step --bundle NAME``.

``train-step`` builds a bundle's trainer from its ``train.yaml`` (the full networks, AMP and
``channels_last`` as configured, which apply on CUDA), feeds it random images of the given size,
and reports training iterations per second after a warm-up, with the peak memory (CUDA memory
allocated on a GPU, the process's peak resident memory on a CPU) and the parameter count of
each network trained.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import time
from pathlib import Path

import torch
import yaml
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.utils import set_determinism
from tqdm import tqdm

__all__ = ["train_step", "main"]

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"

logger = logging.getLogger(__name__)


def train_step(
    bundle: str,
    size: int = 256,
    batch_size: int = 1,
    iterations: int = 20,
    warmup: int = 3,
    overrides: dict | None = None,
    channels: int = 1,
    classes: int = 5,
) -> dict:
    """Measures a bundle's training iterations per second on random inputs.

    Args:
        bundle: a bundle folder name under ``bundles/`` or a path.
        size: image side in pixels.
        batch_size: images per iteration.
        iterations: timed iterations.
        warmup: untimed iterations first.
        overrides: config values to override (e.g. ``{"ngf": 32}``).
        channels: image channels of both domains (3 for RGB bundles such as MI2GAN's polyps).
        classes: segmentation classes (background included) of bundles that train a segmenter
            with source labels (SIFA/SynthMix: random label maps as ``source_label``).

    Returns:
        The measurement as a JSON-ready dictionary.
    """
    root = Path(bundle) if Path(bundle).is_dir() else BUNDLES / bundle
    set_determinism(seed=0)
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "train.yaml"))
    parser["bundle_root"] = str(root)
    for key in ("in_channels", "out_channels", "channels_a", "channels_b"):  # the bundles' channel ids
        if key in parser:
            parser[key] = channels
    if "num_classes" in parser:  # a segmenter's classes, else read from the datalist
        parser["num_classes"] = classes
    if "data_size" in parser:  # the image size networks are built for (e.g. RegGAN's R levels)
        parser["data_size"] = size
    for key, value in (overrides or {}).items():
        parser[key] = value
    a, b = (torch.rand(batch_size, channels, size, size) * 2 - 1 for _ in range(2))
    labels = torch.randint(0, classes, (batch_size, 1, size, size))
    images = {
        "source_image": a,
        "target_image": b,
        "image": a,
        "target": b,
        "source_label": labels,
    }  # every bundle's keys
    parser["train#dataloader"] = [images] * (warmup + iterations)
    parser["train#trainer#train_handlers"] = []
    parser["train#trainer#max_epochs"] = 1
    parser["train#trainer#epoch_length"] = warmup + iterations
    trainer = parser.get_parsed_content("train#trainer")
    device = trainer.state.device
    stamps: list[float] = []

    def stamp(_engine) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    trainer.add_event_handler(Events.ITERATION_COMPLETED, stamp)
    logger.info(
        "Benchmarking %s on %s: %d timed training iterations at %dx%d after %d warm-up",
        bundle,
        device,
        iterations,
        size,
        size,
        warmup,
    )
    progress = tqdm(total=warmup + iterations, desc="iterations", unit="it")
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _engine: progress.update())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.run()
    progress.close()
    seconds = stamps[-1] - stamps[warmup - 1] if warmup else stamps[-1] - stamps[0]
    timed = iterations if warmup else iterations - 1
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
        memory = "cuda max_memory_allocated"
        hardware = torch.cuda.get_device_name(device)
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        memory = "process peak resident set size"
        hardware = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return {
        "benchmark": "train-step",
        "bundle": root.name,
        "image_size": [size, size],
        "channels": channels,
        "batch_size": batch_size,
        "iterations_timed": timed,
        "iterations_per_second": timed / seconds,
        "seconds_per_iteration": seconds / timed,
        "peak_memory_mb": peak_mb,
        "memory_measure": memory,
        "device": str(device),
        "hardware": hardware,
        "amp_bf16": trainer.amp_dtype is not None,
        "channels_last": trainer.memory_format == torch.channels_last,
        "torch": torch.__version__,
        "overrides": overrides or {},
        "parameters": {name: sum(p.numel() for p in net.parameters()) for name, net in trainer.networks.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    """Command line; prints the JSON and writes it to ``--out`` when given."""
    parser = argparse.ArgumentParser(prog="python -m common.benchmark", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    step = commands.add_parser("train-step", help="training iterations per second of a bundle")
    step.add_argument("--bundle", required=True)
    step.add_argument("--size", type=int, default=256)
    step.add_argument("--batch-size", type=int, default=1)
    step.add_argument("--iterations", type=int, default=20)
    step.add_argument("--warmup", type=int, default=3)
    step.add_argument("--channels", type=int, default=1, help="image channels (3 for the RGB mi2gan bundle)")
    step.add_argument("--classes", type=int, default=5, help="segmentation classes of bundles with source labels")
    step.add_argument("--out", type=Path, default=None, help="JSON file to write")
    step.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ID=VALUE",
        dest="overrides",
        help="override a config id, the value read as YAML (e.g. --set mode=pix2pix); repeatable",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set expects ID=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    result = train_step(
        args.bundle, args.size, args.batch_size, args.iterations, args.warmup, overrides, args.channels, args.classes
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
