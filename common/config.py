"""Strict reading of what arrives from the command line.

``python -m monai.bundle run ... --resume false`` passes the *string* ``'false'`` (fire keeps
what is not a Python literal as text), which Python treats as true; :func:`as_bool` reads the
usual spellings and refuses anything else, naming the id; a numeric setting must get a number.
MONAI accepts an override of an id
that no config defines (``--num_epochs 1`` adds an unused id and trains the full schedule);
:func:`check_command_line`, the first step of every bundle's ``initialize``, refuses it, naming
the closest ids, and makes the cause of any error the last line of the output (MONAI reports a
failing config expression as ``Failed to evaluate ConfigExpression: ...``, after the cause).
"""

from __future__ import annotations

import ast
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["as_bool", "check_command_line", "command_line_overrides"]

# `python -m monai.bundle run` arguments that are not config ids (monai.bundle.scripts.run,
# create_workflow and ConfigWorkflow).
RUN_ARGUMENTS = frozenset(
    {
        "run_id",
        "init_id",
        "final_id",
        "meta_file",
        "config_file",
        "logging_file",
        "tracking",
        "args_file",
        "workflow_name",
        "workflow_type",
        "properties_path",
    }
)

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


def command_line_overrides(arguments: Sequence[str]) -> dict[str, str]:
    """The ``--key value`` / ``--key=value`` pairs of a ``monai.bundle run`` command line.

    Args:
        arguments: the arguments after the program (``run``, the run id, then the pairs).

    Returns:
        ``{key: value}`` as typed (a flag without a value maps to ``"True"``), in order.
    """
    pairs: dict[str, str] = {}
    index = 0
    while index < len(arguments):
        token = arguments[index]
        index += 1
        if not token.startswith("--"):
            continue
        key, equals, value = token[2:].partition("=")
        if not equals:
            has_value = index < len(arguments) and not arguments[index].startswith("--")
            value = arguments[index] if has_value else "True"
            index += int(has_value)
        pairs[key] = value
    return pairs


def _config_files(value: str) -> list[str] | str:
    """``--config_file`` as typed: a list literal (``"['a.yaml','b.yaml']"``), or a path (or paths with commas)."""
    if value.strip().startswith("["):
        return [str(v) for v in ast.literal_eval(value)]
    return value


def check_command_line(argv: Sequence[str] | None = None) -> None:
    """Checks the overrides of a ``python -m monai.bundle run`` command against the config files
    it names, and makes the cause of any later error the last line of the output.

    Does nothing in other programs (a bundle parsed from Python, ``common.reproduce``).

    Args:
        argv: the command line (default ``sys.argv``).

    Raises:
        ValueError: an override of an id that no config file defines, naming it and the
            closest ids, or a value that is not a boolean or a number where the config has one.
    """
    argv = list(sys.argv if argv is None else argv)
    if not argv or Path(argv[0]).parts[-3:] != ("monai", "bundle", "__main__.py"):
        return
    _summarise_errors()
    from monai.bundle import ConfigParser

    overrides = command_line_overrides(argv[1:])
    if "args_file" in overrides:
        overrides = {**ConfigParser.load_config_file(overrides["args_file"]), **overrides}
    if "config_file" not in overrides:
        return
    files = _config_files(str(overrides["config_file"]))
    parser = ConfigParser(ConfigParser.load_config_files(files))
    for key, value in overrides.items():
        if key.replace("-", "_") in RUN_ARGUMENTS:
            continue
        if key in parser:
            _check_type(key, value, parser.get(key))
            continue
        known = _ids(parser.get())
        closest = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
        names = ", ".join(files) if isinstance(files, list) else files
        hint = f"; did you mean {', '.join('--' + c for c in closest)}?" if closest else "."
        raise ValueError(f"Unknown setting --{key}: no id of {names} is called {key!r}{hint}")


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _check_type(key: str, text: str, default: Any) -> None:
    """An override of a boolean or numeric setting must be one (a reference or expression is not checked)."""
    if text.startswith(("$", "@", "%")):
        return
    value = _literal(text)
    if isinstance(default, bool):
        as_bool(value, key)
    elif isinstance(default, (int, float)):
        integer = isinstance(value, int) and not isinstance(value, bool)
        if not (integer or (isinstance(default, float) and isinstance(value, float))):
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ValueError(f"--{key} must be {kind} (the config has {default!r}), got {text!r}.")


def _ids(config: Any, prefix: str = "") -> list[str]:
    """Every id of a config, nested ones as ``a#b``."""
    ids: list[str] = []
    if isinstance(config, dict):
        for key, value in config.items():
            ids.append(prefix + str(key))
            ids.extend(_ids(value, f"{prefix}{key}#"))
    return ids


def _summarise_errors() -> None:
    """After Python prints an uncaught exception, prints its root cause again as the last line(s)."""
    if getattr(sys.excepthook, "summarises_cause", False):
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
        previous(kind, error, traceback)
        cause = error
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if cause is not error:
            sys.stderr.write(f"{type(cause).__name__}: {cause}\n")

    hook.summarises_cause = True  # type: ignore[attr-defined]
    sys.excepthook = hook
