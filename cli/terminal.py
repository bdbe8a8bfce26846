"""What a command reads and prints: the options given, files (or stdin), tables, and the
API's answers as text or JSON (``--output``)."""

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from cli.api import Failed

# The subcommands of ``fabu`` (``release``, ``service``…) that each group adds itself to.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns as wide as their longest value, under a header; the last one unpadded."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(
            cell if i == len(headers) - 1 else cell.ljust(widths[i]) for i, cell in enumerate(line)
        ).rstrip()
        for line in lines
    )


def print_answer(args: argparse.Namespace, value: Any, text: Callable[[Any], str]) -> None:
    """An answer as ``text`` words it, or as JSON with ``--output json``."""
    print(json.dumps(value, indent=2, ensure_ascii=False) if args.output == "json" else text(value))


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among ``names`` given on the command line, by their API names."""
    return {n: getattr(args, n) for n in names if getattr(args, n) not in (None, "")}


def read_text(path: str) -> str:
    """A file's text (``-``: stdin)."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise Failed(f"{path}: {exc.strerror}") from exc


def read_document(path: str, what: str) -> Any:
    """A JSON or YAML file's value."""
    try:
        return yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise Failed(f"{what}: {path} is not JSON or YAML: {exc}") from exc
