"""``experiments.errors``: the one-line messages a user reads on stderr."""

import io

import pytest

from experiments.errors import exit_with, say


class Writes(io.StringIO):
    """A stderr that keeps each ``write`` call apart, as another thread writing at the same time would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def test_a_line_is_written_whole_so_forwarded_output_cannot_split_it(monkeypatch):
    stderr = Writes()
    monkeypatch.setattr("sys.stderr", stderr)
    say("Interrupted (Ctrl-C): finish the sweep with\n  python train.py finish=sweep")
    with pytest.raises(SystemExit) as exited:
        exit_with("1 of 3 jobs did not complete", code=1)
    assert exited.value.code == 1
    assert stderr.calls == [
        "Interrupted (Ctrl-C): finish the sweep with\n  python train.py finish=sweep\n",
        "Error: 1 of 3 jobs did not complete\n",
    ]
