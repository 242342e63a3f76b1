import sys

import pytest
import torch

# Two cores are shared by the whole suite; one intra-op thread keeps timings stable.
torch.set_num_threads(1)


@pytest.fixture
def cli(monkeypatch, capsys):
    """``normscope ARGS`` in this process through :func:`normscope.cli.main`:
    returns (exit code, stdout, stderr)."""
    from normscope.cli import main

    monkeypatch.setenv("COLUMNS", "400")

    def call(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["normscope", *args])
        with pytest.raises(SystemExit) as done:
            main()
        out = capsys.readouterr()
        return done.value.code, out.out, out.err

    return call
