"""Packaging and API conventions: dependencies, version, docstrings and type hints."""

from __future__ import annotations

import configparser
import importlib.metadata
import inspect
from pathlib import Path

import pytest

import common
import common.engines
import common.evaluation
import common.handlers
import common.losses
import common.metrics
import common.networks
import common.reproduce

ROOT = Path(__file__).resolve().parents[1]


def requirements() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return [line.strip() for line in config["options"]["install_requires"].splitlines() if line.strip()]


def test_dependencies():
    names = {req.split(">")[0].split("=")[0].split("<")[0].strip().lower() for req in requirements()}
    assert {
        "monai",
        "torch",
        "nibabel",
        "pydicom",
        "itk",
        "pyyaml",
        "fire",
        "jsonschema",
        "tqdm",
        "tensorboard",
        "scikit-image",
    } <= names
    assert "torchvision" not in names
    torch_requirement = next(req for req in requirements() if req.startswith("torch"))
    assert "==" not in torch_requirement and ">=" in torch_requirement  # a range, never a pin
    assert "monai>=1.4" in requirements()


def test_installed_version_is_the_package_version():
    assert importlib.metadata.version("monai-crossdomain") == common.__version__


PUBLIC = [
    (module, name)
    for module in (
        common.metrics,
        common.losses,
        common.networks,
        common.engines,
        common.reproduce,
        common.evaluation,
        common.handlers,
    )
    for name in module.__all__
]


@pytest.mark.parametrize("module,name", PUBLIC, ids=[name for _, name in PUBLIC])
def test_public_api_is_documented_and_typed(module, name):
    obj = getattr(module, name)
    if not callable(obj):
        return  # a constant, documented where it is defined
    assert inspect.getdoc(obj), f"{name} has no docstring"
    functions = (
        [obj]
        if inspect.isfunction(obj)
        else [
            member
            for member_name, member in vars(obj).items()
            if inspect.isfunction(member)
            and (not member_name.startswith("_") or member_name in ("__init__", "forward"))
        ]
    )
    for function in functions:
        signature = inspect.signature(function)
        unannotated = [p for p in signature.parameters.values() if p.name != "self" and p.annotation is p.empty]
        assert not unannotated, f"{name}.{function.__name__}: parameters without type hints {unannotated}"
        assert signature.return_annotation is not signature.empty, f"{name}.{function.__name__}: no return type"
        returns_none = signature.return_annotation in (None, "None")
        if (inspect.isfunction(obj) or not function.__name__.startswith("_")) and not returns_none:
            assert (
                "Returns:" in (function.__doc__ or "") or function.__name__ == "__init__"
            ), f"{name}.{function.__name__}: docstring has no Returns section"
