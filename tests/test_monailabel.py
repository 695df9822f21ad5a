"""MONAI Label, for real: a MONAI Label server on 127.0.0.1 with the project's app
(``common/label_app``, from a working folder ``common.label_app.prepare`` writes) serves every
segmentation bundle trained with ``quick.yaml``; each
bundle's answer to ``/infer/<model>`` for an uploaded image (2D for MI2GAN, a 3D volume slice by
slice for the others) equals, voxel for voxel and with the input's geometry, what the bundle's
own ``monai.bundle run`` inference writes for the same image.

Needs MONAI Label installed beside the project (README, "Use in MONAI Label"); deselected by
default (marker ``monailabel``); CI runs it in its own virtual environment:
``python -m pytest -m monailabel``."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import ENV, bundle_infer, bundle_run, copy_bundle

from common.bundle import read_settings
from common.data.datalist import entries, load_datalist
from common.label_app import prepare

pytestmark = pytest.mark.monailabel

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
SEGMENTATION = ["mi2gan", "dadr", "synthmix", "global_local_alignment"]


def _label_tool() -> Path:
    tool = Path(sys.executable).parent / "monailabel"
    if importlib.util.find_spec("monailabel") is None or not tool.is_file():
        pytest.fail("MONAI Label is not installed in this environment (README: Use in MONAI Label).")
    return tool


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every segmentation bundle, trained with quick.yaml: {name: (bundle, a target test image)}."""
    bundles = {}
    for name in SEGMENTATION:
        root = copy_bundle(tmp_path_factory.mktemp("bundles") / name, BUNDLES / name)
        bundle_run(root, "training", ["configs/train.yaml", "configs/quick.yaml"])
        datalist = root / read_settings(root / "models")["settings"]["datalist"]
        image = entries(load_datalist(datalist), "target", "test")[0]["image"]
        bundles[name] = (root, Path(image))
    return bundles


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """A MONAI Label server with the project's app serving the trained bundles; stopped after the tests."""
    import requests

    tool = _label_tool()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    studies = tmp_path_factory.mktemp("studies")
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    app_dir = prepare(tmp_path_factory.mktemp("app"))  # MONAI Label writes its logs and caches there
    command = [str(tool), "start_server", "--app", str(app_dir), "--studies", str(studies)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    command += ["--conf", "bundles", ",".join(str(root) for root, _ in trained.values())]
    env = {
        **ENV,
        "PATH": f"{tool.parent}{os.pathsep}{ENV.get('PATH', '')}",
    }  # the tool runs `python -m monailabel.main`
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, Path(log.name).read_text()[-3000:]
            try:
                if requests.get(f"{url}/info/", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, Path(log.name).read_text()[-3000:]
            time.sleep(1)
        yield url, Path(log.name)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
    assert process.returncode is not None


def test_the_app_lists_each_bundle_with_its_classes(server):
    import requests

    url, _ = server
    models = requests.get(f"{url}/info/", timeout=30).json()["models"]
    assert set(models) == set(SEGMENTATION)
    assert models["mi2gan"]["labels"] == {"polyp": 1} and models["mi2gan"]["type"] == "segmentation"
    assert models["dadr"]["labels"] == {"liver": 1, "right kidney": 2, "left kidney": 3, "spleen": 4}
    assert models["global_local_alignment"]["labels"]["myocardium"] == 4


@pytest.mark.parametrize("name", SEGMENTATION)
def test_infer_equals_the_bundles_own_inference(server, trained, name, tmp_path):
    import nibabel as nib
    import requests
    from monai.transforms import LoadImage

    url, log = server
    root, image = trained[name]
    two_d = image.suffix == ".png"
    assert two_d == (name == "mi2gan")  # MI2GAN's polyp frames are 2D; the others' target images are volumes
    with image.open("rb") as file:
        upload = requests.put(f"{url}/datastore/", params={"image": f"{name}_input"}, files={"file": file}, timeout=60)
    assert upload.ok, upload.text
    answer = requests.post(f"{url}/infer/{name}", params={"image": f"{name}_input", "output": "image"}, timeout=300)
    assert answer.ok, answer.text + log.read_text()[-3000:]
    served = tmp_path / ("served.png" if two_d else "served.nii.gz")
    served.write_bytes(answer.content)

    bundle_infer(root, image, tmp_path / "direct")
    direct = tmp_path / "direct" / (image.name.replace(".png", "_seg.png").replace(".nii.gz", "_seg.nii.gz"))
    if two_d:
        load = LoadImage(image_only=True, reader="PILReader")
        served_map, direct_map = np.asarray(load(str(served))), np.asarray(load(str(direct)))
        assert served_map.shape == np.asarray(load(str(image))).shape[:2]
    else:
        served_nifti, direct_nifti = nib.load(served), nib.load(direct)
        served_map, direct_map = np.asarray(served_nifti.dataobj), np.asarray(direct_nifti.dataobj)
        assert served_map.shape == nib.load(image).shape
        np.testing.assert_allclose(served_nifti.affine, nib.load(image).affine, atol=1e-5)
    assert len(np.unique(direct_map)) > 1  # the quick-trained network finds something: the comparison is not trivial
    np.testing.assert_array_equal(served_map, direct_map)


def test_the_app_names_a_folder_that_is_not_a_trained_bundle(tmp_path):
    _label_tool()
    from common.label_app import app

    with pytest.raises(ValueError, match="Name the bundles to serve"):
        app.served_bundles({})
    untrained = copy_bundle(tmp_path / "mi2gan", BUNDLES / "mi2gan")
    with pytest.raises(ValueError, match=f"--conf bundles: {untrained} has no models/model.pt"):
        app.served_bundles({"bundles": str(untrained)})
