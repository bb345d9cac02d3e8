"""CLI command (placeholder until implemented)."""

from __future__ import annotations

import argparse

from ..errors import MagicBokehError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise MagicBokehError("not implemented yet")
