"""scripts/born_dead.py: wrong arguments are refused before anything is written; runs never collide."""

import subprocess
import sys

import pytest

from conftest import ROOT, subprocess_env

pytestmark = pytest.mark.slow
SCRIPT = str(ROOT / "scripts" / "born_dead.py")


def born_dead(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "out"), *args], cwd=tmp_path,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, words", [(["--init", "foo"], "invalid choice: 'foo'"), (["--seeds", "0"], "--seeds"),
                                         (["--widths", "-2"], "--widths")])
def test_wrong_arguments_are_refused_and_leave_nothing(tmp_path, args, words):
    proc = born_dead(tmp_path, *args)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_two_runs_in_the_same_second_get_their_own_directories(tmp_path):
    small = ["--widths", "2", "--depths", "2", "--seeds", "3", "--probe", "50"]
    procs = [subprocess.Popen([sys.executable, SCRIPT, "--out", str(tmp_path / "out"), *small], cwd=tmp_path,
                              env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    runs = sorted((tmp_path / "out").iterdir())
    assert len(runs) == 2 and all((r / "born_dead.md").is_file() and (r / "born_dead.csv").is_file() for r in runs)


def test_help_names_the_output_it_writes(tmp_path):
    proc = born_dead(tmp_path, "--help")
    assert proc.returncode == 0 and "outputs/born_dead/<time>_<microseconds>-<pid>/born_dead.csv" in proc.stdout
