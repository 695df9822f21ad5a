"""Shared fixtures: small synthetic datasets, generated once per test session."""

from __future__ import annotations

import pytest

from common.data.synthetic import generate


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """``synthetic(task, **options)``: the datalist path of a small generated dataset (cached)."""
    cache: dict = {}

    def make(task: str, size: int = 32, subjects: int = 5, **options):
        key = (task, size, subjects, tuple(sorted(options.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"synthetic_{task}")
            cache[key] = generate(task, out, size=size, subjects=subjects, overwrite=True, **options)
        return cache[key]

    return make
