"""The `hwsim` command: a thin layer over the Python API."""
from hwsim.cli.main import main

__all__ = ["main"]
