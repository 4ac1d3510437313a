"""Reading a user's text file (configs, topology CSVs): bytes decoded here, so binary garbage is
one clear error naming the file, not a UnicodeDecodeError."""
from __future__ import annotations

from pathlib import Path


def read_text(path: Path, what: str, error: type[Exception]) -> str:
    """The UTF-8 text of `path` (a leading BOM dropped); `error` naming the file otherwise.
    `what` says what the file should be ("a YAML accelerator config")."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a text file (UTF-8): byte 0x{data[exc.start]:02x} at offset "
                    f"{exc.start} cannot be decoded; expected {what}") from None
    if "\x00" in content:
        raise error(f"{path}: not a text file (UTF-8): it contains NUL bytes at offset "
                    f"{content.index(chr(0))}; expected {what}")
    return content


def read_yaml(path: Path, what: str, error: type[Exception]) -> object:
    """The parsed YAML (or JSON) content of `path` with unique keys; `error` naming the file for
    an unreadable file or invalid YAML. `what` says what the file should be."""
    from hwsim.arch.schema import load_yaml

    try:
        return load_yaml(read_text(path, what, error))
    except ValueError as exc:
        raise error(f"{path}: not valid YAML/JSON: {exc}") from None
