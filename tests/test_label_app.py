"""The MONAI Label app's working folder: MONAI Label writes logs and caches into the folder it
loads an app from, so the app is served from a folder ``common.label_app`` prepares, never from
the installed package (the server itself is tested in ``test_monailabel.py``)."""

from __future__ import annotations

import subprocess
import sys

from common.label_app import MAIN, default_app_dir, prepare


def test_prepare_writes_a_main_that_imports_the_app(tmp_path, monkeypatch):
    folder = prepare(tmp_path / "app")
    assert sorted(p.name for p in folder.iterdir()) == ["main.py"]
    assert (folder / "main.py").read_text() == MAIN
    assert "from common.label_app.app import CrossDomainApp" in MAIN
    (folder / "logs").mkdir()  # what MONAI Label adds stays; main.py is rewritten only when it differs
    (folder / "main.py").write_text("stale")
    assert prepare(folder) == folder and (folder / "main.py").read_text() == MAIN and (folder / "logs").is_dir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_app_dir() == tmp_path / "cache" / "monai-crossdomain" / "label_app"


def test_the_command_prints_the_prepared_folder(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": ""}
    printed = subprocess.run(
        [sys.executable, "-m", "common.label_app"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert printed == str(tmp_path / "cache" / "monai-crossdomain" / "label_app")
    assert (tmp_path / "cache" / "monai-crossdomain" / "label_app" / "main.py").read_text() == MAIN
