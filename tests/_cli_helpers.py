"""What the CLI tests share: the one-line error check."""


def one_error_line(capsys, command: str = "verify") -> str:
    """The single line ``hwsim COMMAND: error: ...`` on stderr (no traceback), returned."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hwsim {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]
