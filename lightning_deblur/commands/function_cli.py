"""Command lines made from a function's signature (for ``synth``, ``evaluate``, ``figures``).

jsonargparse turns the annotated parameters and their docstring into options, with
``--config`` files and ``--print_config`` for free, the same way LightningCLI does for
``fit``.
"""

from __future__ import annotations

from collections.abc import Callable

from jsonargparse import ActionConfigFile, ArgumentParser


def function_parser(function: Callable, prog: str | None = None, description: str | None = None) -> ArgumentParser:
    """A parser with ``--config`` and one option per parameter of ``function``."""
    parser = ArgumentParser(prog=prog, description=description or (function.__doc__ or "").split("\n")[0])
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(function, as_group=False)
    return parser


def options_of(namespace) -> dict:
    """The parsed values as keyword arguments of the function (parser bookkeeping removed)."""
    return {key: value for key, value in vars(namespace).items() if key not in ("config", "__default_config__")}
