"""The `l2l-fast` command line: parser, run files, the demo."""
from .main import build_parser, main

__all__ = ["main", "build_parser"]
