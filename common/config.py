"""Strict reading of configuration values that arrive from the command line.

``python -m monai.bundle run ... --resume false`` passes the *string* ``'false'`` (fire keeps
what is not a Python literal as text), which Python treats as true; :func:`as_bool` reads the
usual spellings and refuses anything else, naming the id."""

from __future__ import annotations

from typing import Any

__all__ = ["as_bool"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def as_bool(value: Any, name: str) -> bool:
    """A boolean setting, read strictly.

    Args:
        value: ``True``/``False``, ``1``/``0``, or a string ``true``/``false``, ``yes``/``no``,
            ``on``/``off``, ``1``/``0`` (any case).
        name: the config id, for the error.

    Returns:
        The boolean.

    Raises:
        ValueError: any other value, naming ``name`` and the value.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"`{name}` must be true or false (or yes/no, on/off, 1/0), got {value!r}.")
