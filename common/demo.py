"""A first look at the shared package: ``python -m common.demo [--out DIR]``.

It checks two pieces every method builds on against quantities known in closed form, and
draws a figure:

1. surface metrics: ASSD and HD95 of a sphere against the same sphere shifted by ``t`` mm,
   whose continuum values are ``t / 2`` and ``0.95 t``;
2. the Donsker-Varadhan mutual-information estimator: a small critic trained on correlated
   Gaussians (rho = 0.8, d = 2) approaches the true ``-d/2 log(1 - rho^2)`` nats.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai.networks.nets import FullyConnectedNet  # noqa: E402
from monai.utils import set_determinism  # noqa: E402
from tqdm import trange  # noqa: E402

from common.losses import MutualInformationEstimator  # noqa: E402
from common.metrics import assd, dice_score, hd95  # noqa: E402

logger = logging.getLogger("common.demo")


def surface_metrics(radius: float = 16.0, shift: float = 6.0, spacing: float = 1.0) -> dict[str, float]:
    """Dice, ASSD and HD95 of a voxelised sphere against the same sphere shifted along one axis.

    Args:
        radius: sphere radius in mm.
        shift: shift in mm (a whole number of voxels).
        spacing: isotropic voxel spacing in mm.

    Returns:
        The measured metrics and their continuum values.
    """
    size = int(2 * (radius + shift) / spacing) + 4
    axes = (np.arange(size) - size / 2) * spacing
    grids = np.meshgrid(axes, axes, axes, indexing="ij")
    sphere = sum(g**2 for g in grids) <= radius**2
    shifted = np.roll(sphere, int(round(shift / spacing)), axis=0)
    return {
        "dice": dice_score(sphere, shifted),
        "assd_mm": assd(sphere, shifted, spacing),
        "assd_continuum_mm": shift / 2,
        "hd95_mm": hd95(sphere, shifted, spacing),
        "hd95_continuum_mm": 0.95 * shift,
    }


def mutual_information(rho: float = 0.8, dims: int = 2, steps: int = 1000, batch: int = 256) -> dict:
    """Trains a DV critic on correlated Gaussians and evaluates the bound on held-out samples.

    Args:
        rho: correlation of each pair of dimensions.
        dims: number of dimensions of x and of z.
        steps: training steps.
        batch: training batch size.

    Returns:
        The true mutual information, the final estimate and the per-step training bounds.
    """

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, dims)
        return x, rho * x + math.sqrt(1 - rho**2) * torch.randn(n, dims)

    mine = MutualInformationEstimator(FullyConnectedNet(2 * dims, 1, (64, 64)), moving_average_rate=0.01)
    optimiser = torch.optim.Adam(mine.parameters(), lr=1e-3)
    history = []
    for _ in trange(steps, desc="training the MI critic", unit="step"):
        bound = mine(*sample(batch))
        optimiser.zero_grad()
        (-bound).backward()
        optimiser.step()
        history.append(bound.detach().item())
    x, z = sample(100_000)
    with torch.no_grad():
        estimate = float(mine.eval()(x, z, sample(100_000)[1]))
    return {"true_nats": -dims / 2 * math.log(1 - rho**2), "estimate_nats": estimate, "history": history}


def draw(mi: dict, path: Path) -> None:
    """Draws the training curve of the MI bound against the true value."""
    history = np.asarray(mi["history"])
    window = max(1, len(history) // 50)
    smooth = np.convolve(history, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(history, color="0.8", lw=0.8, label="DV bound, training batch")
    ax.plot(np.arange(window - 1, len(history)), smooth, color="C0", label=f"moving mean ({window} steps)")
    ax.axhline(mi["true_nats"], color="C3", ls="--", label=f"true MI {mi['true_nats']:.3f} nats")
    ax.axhline(mi["estimate_nats"], color="C2", ls=":", label=f"held-out estimate {mi['estimate_nats']:.3f}")
    ax.set(xlabel="training step", ylabel="nats", title="Donsker-Varadhan estimate, correlated Gaussians")
    ax.set_ylim(min(-0.2, float(smooth.min())), mi["true_nats"] * 1.4)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Runs the demo and writes ``results.json`` and ``mutual_information.png`` into ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m common.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of the MI critic (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    set_determinism(seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    surface = surface_metrics()
    logger.info(
        "Sphere (r 16 mm) vs the same sphere shifted 6 mm: Dice %.3f, ASSD %.2f mm (continuum %.2f), "
        "HD95 %.2f mm (continuum %.2f)",
        surface["dice"], surface["assd_mm"], surface["assd_continuum_mm"], surface["hd95_mm"],
        surface["hd95_continuum_mm"],
    )
    mi = mutual_information(steps=args.steps)
    logger.info("Mutual information: true %.3f nats, DV estimate %.3f nats", mi["true_nats"], mi["estimate_nats"])
    figure = args.out / "mutual_information.png"
    draw(mi, figure)
    results = {"surface_metrics": surface, "mutual_information": {k: mi[k] for k in ("true_nats", "estimate_nats")}}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    logger.info("Wrote %s and %s", args.out / "results.json", figure)
    return results


if __name__ == "__main__":
    main()
