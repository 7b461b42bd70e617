"""Config values of the wrong type, caught before anything is built, with the key named.

Hydra rejects unknown keys (struct mode) but passes any value through: ``model.n_critic=abc`` would reach the
model as a string and fail deep inside as "'<' not supported between 'str' and 'int'". Every config node with a
``_target_`` names a class or function whose signature says what it takes, so :func:`check_types` reads the
annotations of the target's parameters and checks the plain ones (int, float, bool, str, and those or None)
against the composed values. Parameters passed through ``**kwargs`` to a base class are checked against the base
class's signature too. Values the annotations do not pin down (sequences, mappings, objects) are left alone.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

SIMPLE = (bool, int, float, str)


def check_types(cfg: DictConfig, sections: tuple[str, ...] = ("data", "model", "loss", "trick", "callbacks")) -> None:
    """Raise ``ValueError("<key> must be <type>, got <value>")`` for the first mistyped value in ``sections``."""
    for section in sections:
        node = cfg.get(section)
        if not isinstance(node, DictConfig):
            continue
        try:
            values = OmegaConf.to_container(node, resolve=True)
        except OmegaConfBaseException:  # a broken interpolation: building the run reports it with its key
            continue
        _check_node(values, section)


def _check_node(node: Any, path: str) -> None:
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str):
            _check_call(target, node, path)
        for key, value in node.items():
            if isinstance(value, dict | list):
                _check_node(value, f"{path}.{key}")
    elif isinstance(node, list | ListConfig):
        for index, value in enumerate(node):
            _check_node(value, f"{path}[{index}]")


def _check_call(target: str, node: dict[str, Any], path: str) -> None:
    try:
        hints = _parameter_types(get_object(target))
    except Exception:  # an unknown target is instantiate's error to report, with its own message
        return
    for key, value in node.items():
        if key.startswith("_") or key not in hints:
            continue
        expected = _simple_types(hints[key])
        if expected is None or value is None and type(None) in expected:
            continue
        if not _matches(value, expected):
            names = " or ".join(t.__name__ if t is not type(None) else "null" for t in expected)
            raise ValueError(f"{path}.{key} must be {names}, got {value!r} ({type(value).__name__})")


def _parameter_types(target: Callable[..., Any]) -> dict[str, Any]:
    """Annotations of the parameters ``target`` takes, following ``**kwargs`` up the class hierarchy."""
    hints: dict[str, Any] = {}
    functions = (
        [c.__init__ for c in inspect.getmro(target) if "__init__" in vars(c)] if inspect.isclass(target) else [target]
    )
    for function in functions:
        try:
            resolved = typing.get_type_hints(function)
        except Exception:
            continue
        parameters = inspect.signature(function).parameters
        for name, parameter in parameters.items():
            if name not in hints and name in resolved and parameter.kind is not parameter.VAR_KEYWORD:
                hints[name] = resolved[name]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            break  # nothing is forwarded further up
    return hints


def _simple_types(hint: Any) -> tuple[type, ...] | None:
    """The plain types a hint allows (``int | None`` -> (int, NoneType)), or None if it allows anything else."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if all(option in SIMPLE or option is type(None) for option in options):
        return tuple(options)
    return None


def _matches(value: Any, expected: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in expected
    if isinstance(value, int):
        return int in expected or float in expected
    if isinstance(value, float):
        return float in expected
    return any(isinstance(value, t) for t in expected if t is not type(None))
