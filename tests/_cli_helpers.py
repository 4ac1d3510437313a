"""What the CLI tests share: the one-line error check, and a fixture that refuses quantizing."""

import pytest


def one_error_line(capsys, command: str = "verify") -> str:
    """The single line ``hwsim COMMAND: error: ...`` on stderr (no traceback), returned."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hwsim {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_quantizing(monkeypatch):
    """Checks that must fail before the zoo model is quantized (seconds of work): import this
    fixture into a test module to use it."""
    def refuse(*args, **kwargs):
        raise AssertionError("quantize_zoo_model reached: the check came too late")

    monkeypatch.setattr("hwsim.flows.quantize_zoo_model", refuse)
