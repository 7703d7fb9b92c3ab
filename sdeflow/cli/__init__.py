"""The ``sdeflow`` command line (click)."""

from .main import main

__all__ = ["main"]
