"""The package as the model zoo's CI would install it by name: `python -m build` makes an sdist
and a wheel of monai-crossdomain; each, installed apart from the repository (``pip install
--target``, its dependencies those of the test environment), lets a copied bundle folder train
with `quick.yaml` and infer through `python -m monai.bundle`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import common

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("models", "eval", "data", "build", "dist", "*.egg-info", ".git", ".ci", "__pycache__", "reproduce", "runs")


def run(args: list[str], cwd: Path, site: Path | None = None) -> str:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    source = tmp_path_factory.mktemp("source") / "monai-crossdomain"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*OUTPUTS))
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)], cwd=source)
    return out


def test_build_makes_an_sdist_and_a_wheel_of_the_package(dist):
    version = common.__version__
    wheel = dist / f"monai_crossdomain-{version}-py3-none-any.whl"
    assert (
        wheel.is_file() and len(list(dist.glob(f"monai[-_]crossdomain-{version}.tar.gz"))) == 1
    )  # older setuptools: -
    names = zipfile.ZipFile(wheel).namelist()
    assert "common/bundle/metadata_schema.json" in names and "common/networks/global_local.py" in names
    assert not [n for n in names if n.startswith(("tests/", "bundles/"))]


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_the_installed_package_runs_a_bundle(dist, kind, tmp_path):
    package = next(dist.glob("*.whl" if kind == "wheel" else "*.tar.gz"))
    site = tmp_path / "site"
    run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site)]
        + [str(package)],
        cwd=tmp_path,
    )
    where = run([sys.executable, "-c", "import common; print(common.__file__, common.__version__)"], tmp_path, site)
    assert where.split() == [str(site / "common" / "__init__.py"), common.__version__]  # not the repository's
    bundle = tmp_path / "cyclegan"
    shutil.copytree(ROOT / "bundles" / "cyclegan", bundle, ignore=shutil.ignore_patterns("models", "eval", "data"))
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--meta_file",
        "configs/metadata.json",
        "--bundle_root",
        ".",
    ]
    run([*command, "training", "--config_file", "['configs/train.yaml','configs/quick.yaml']"], bundle, site)
    run([*command, "--config_file", "configs/inference.yaml", "--output_dir", str(tmp_path / "out")], bundle, site)
    assert (bundle / "models" / "model.pt").is_file() and list((tmp_path / "out").glob("*_trans.nii.gz"))
