"""The sweep report, from a small real sweep and from hand-made job records."""

import csv
import json
import math
import statistics
import subprocess
import sys

import pytest

from conftest import FAST, ROOT, run_script, subprocess_env
from experiments.reports import build_report, group_configs, label_configs


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    proc = run_script(["-m", "activation=relu,alrelu", "seed=0,1", *FAST, "diagnostics.histograms=null"], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = tmp.glob("outputs/multirun/*/*")
    return sweep_dir, proc


@pytest.mark.slow
def test_report_is_written_at_the_end_of_the_multirun(sweep):
    sweep_dir, proc = sweep
    for name in ("summary.csv", "summary.md", "val_acc_per_epoch.png", "test_acc.png"):
        assert (sweep_dir / name).stat().st_size > 0, name
    assert (sweep_dir / "test_acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Sweep report" in proc.stdout


@pytest.mark.slow
def test_csv_has_one_row_per_job_with_its_metrics(sweep):
    sweep_dir, _ = sweep
    rows = list(csv.DictReader(open(sweep_dir / "summary.csv")))
    assert len(rows) == 4
    for row in rows:
        job = json.loads((sweep_dir / row["job"] / "metrics.json").read_text())
        assert float(row["test/acc"]) == pytest.approx(job["test/acc"])
        assert row["status"] == "completed" and float(row["wall_seconds"]) > 0
        assert "diag/dead_frac/total" in row


@pytest.mark.slow
def test_markdown_aggregates_seeds_per_configuration(sweep):
    sweep_dir, _ = sweep
    md = (sweep_dir / "summary.md").read_text()
    for act in ("relu", "alrelu"):
        accs = [json.loads(p.read_text())["test/acc"] for p in sweep_dir.glob(f"*activation={act},*/metrics.json")]
        assert len(accs) == 2
        cell = f"{statistics.fmean(accs):.4f} ± {statistics.stdev(accs):.4f}"
        line = next(l for l in md.splitlines() if f"`activation={act}`" in l)
        assert cell in line and "2/2" in line


@pytest.mark.slow
def test_report_rebuilds_from_the_command_line_also_when_interrupted(sweep, tmp_path):
    import shutil

    sweep_dir, _ = sweep
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    (copy / "summary.md").unlink()
    killed = next(copy.glob("1_*"))
    (killed / "metrics.json").unlink()  # as if the job was killed before writing anything
    running = next(copy.glob("2_*"))  # killed while training: its record still says running
    record = json.loads((running / "metrics.json").read_text())
    (running / "metrics.json").write_text(json.dumps({**record, "status": "running"}))
    proc = subprocess.run([sys.executable, "-m", "experiments.reports", str(copy)], capture_output=True, text=True,
                          cwd=ROOT, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    md = (copy / "summary.md").read_text()
    assert f"`{killed.name}`: **incomplete**" in md and f"`{running.name}`: **incomplete**" in md
    rows = list(csv.DictReader(open(copy / "summary.csv")))
    assert sorted(r["status"] for r in rows) == ["completed"] * 2 + ["incomplete"] * 2


@pytest.mark.slow
def test_report_command_names_a_wrong_directory(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.reports", str(tmp_path / "nope")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and "nope is not a directory" in proc.stderr


def job(overrides: list[str], status: str = "completed", acc: float = 0.9) -> dict:
    return {"job": "x", "status": status, "test/acc": acc, "_overrides": dict(o.split("=") for o in overrides)}


def test_seed_aggregation_mean_and_std_and_failures_are_kept():
    jobs = [job(["activation=relu", "seed=0"], acc=0.90), job(["activation=relu", "seed=1"], acc=0.94),
            job(["activation=elu", "seed=0"], acc=0.97), job(["activation=elu", "seed=1"], "diverged", math.nan)]
    assert label_configs(jobs) == []
    groups = {g["config"]: g for g in group_configs(jobs)}
    assert groups["activation=relu"]["test/acc"] == pytest.approx((0.92, statistics.stdev([0.90, 0.94])))
    assert groups["activation=elu"]["test/acc"] == (0.97, 0.0)
    assert groups["activation=elu"]["completed"] == 1 and groups["activation=elu"]["jobs"] == 2
    assert "diverged" in groups["activation=elu"]["statuses"]
    assert [g["config"] for g in group_configs(jobs)] == ["activation=elu", "activation=relu"]  # best first


def test_build_report_refuses_an_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no job directories"):
        build_report(tmp_path)
