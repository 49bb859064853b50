"""Sweeps: parallel jobs without leaks, failure isolation, submitit; DDP on 2 CPU processes in a single run."""

import os

import pytest
import yaml

from conftest import FAST, read_metrics, run_process, run_script

pytestmark = pytest.mark.slow


def jobs_of(tmp_path) -> list:
    return sorted(tmp_path.glob("outputs/multirun/*/*/[0-9]*_*"), key=lambda p: int(p.name.split("_")[0]))


def test_joblib_runs_in_parallel_with_threads_per_job_and_no_leaks(tmp_path):
    # n_jobs=1: the same reused loky worker runs all jobs one after another, so state left by one
    # (deterministic algorithms, thread count) would show in the next
    proc = run_script(
        [
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=1",
            "deterministic=true,false,true",
            *FAST,
            "trainer.limit_train_batches=3",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = [read_metrics(j) for j in jobs_of(tmp_path)]
    assert [m["deterministic_algorithms"] for m in metrics] == [True, False, True]
    assert all(m["threads"] == os.cpu_count() for m in metrics)  # one job at a time: every core
    # jobs 0 and 2 are the same configuration in the same worker: seeded afresh, they train identically
    first, third = metrics[0], metrics[2]
    assert first["history"] == {**third["history"], "epoch_seconds": first["history"]["epoch_seconds"]}
    assert (
        first["test/acc"] == third["test/acc"]
        and first["diag/born_dead_frac/total"] == third["diag/born_dead_frac/total"]
    )


def test_joblib_parallel_jobs_share_the_cores(four_job_sweep):
    sweep = four_job_sweep("joblib")  # hydra.launcher.n_jobs=2
    threads = [read_metrics(job)["threads"] for job in sorted(sweep.glob("*_activation=*"))]
    assert threads == [max(1, os.cpu_count() // 2)] * 4


def test_a_failing_and_a_diverging_job_do_not_stop_the_sweep(tmp_path):
    proc = run_script(
        ["-m", "optimizer=sgd", "optimizer.lr=0.1,1e6,-1", *FAST, "trainer.log_every_n_steps=5"], tmp_path
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("Error: 2 of 3 jobs did not complete (1 diverged, 1 failed): see ")
    )
    statuses = [read_metrics(j)["status"] for j in jobs_of(tmp_path)]
    assert statuses == ["completed", "diverged", "failed"]
    md = next(tmp_path.glob("outputs/multirun/*/*/summary.md")).read_text()
    assert "**diverged** diverged in epoch 1, step 5" in md and "**failed** optimizer.lr=-1 is invalid" in md


def test_submitit_local_launcher(tmp_path):
    proc = run_script(
        ["-m", "hydra/launcher=submitit_local", "optimizer=sgd,adam", *FAST, "trainer.limit_train_batches=3"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [read_metrics(j)["status"] for j in jobs_of(tmp_path)] == ["completed", "completed"]
    assert next(tmp_path.glob("outputs/multirun/*/*/summary.md"))


DDP = ["trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]


def test_ddp_on_two_cpu_processes_in_a_single_run(tmp_path):
    proc = run_process([*FAST, *DDP, "trainer.limit_test_batches=null", "trainer.limit_val_batches=null"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = [p.parent for p in tmp_path.glob("outputs/runs/*/*/metrics.json")]  # one directory, not one per rank
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["test/acc"] > 0.5
    assert (run_dir / "train_ddp_process_1.log").exists()  # rank 1 ran in the same directory
    # each rank trained on half of each batch's worth of the data: 20 steps = 20 * 256 * 2 images
    assert metrics["global_step"] == 20


def test_ddp_inside_a_multirun_is_refused_before_any_rank_starts(tmp_path):
    proc = run_script(["-m", "optimizer=sgd,adam", *FAST, *DDP], tmp_path)
    assert proc.returncode == 1 and "2 of 2 jobs did not complete (2 failed)" in proc.stderr
    jobs = jobs_of(tmp_path)
    assert len(jobs) == 2 and all(read_metrics(j)["status"] == "failed" for j in jobs)
    assert all("run it without -m" in read_metrics(j)["error"] for j in jobs)
    assert not any((j / "train_ddp_process_1.log").exists() for j in jobs)
    assert len(list(tmp_path.glob("outputs/multirun/*/*"))) == 1


def test_the_optuna_preset_searches_and_ranks_by_the_validation_accuracy(tmp_path):
    proc = run_script(["hparams_search=lr_width", "hydra.sweeper.n_trials=2", *FAST, "diagnostics=none"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = jobs_of(tmp_path)
    assert len(jobs) == 2 and all(read_metrics(j)["status"] == "completed" for j in jobs)
    (optimization,) = tmp_path.glob("outputs/multirun/*/*/optimization_results.yaml")
    best = yaml.safe_load(optimization.read_text())["best_value"]
    assert best == pytest.approx(max(read_metrics(j)["val/acc"] for j in jobs))
    lrs = [
        float(next(o for o in read_metrics(j)["overrides"] if o.startswith("optimizer.lr=")).split("=")[1])
        for j in jobs
    ]
    assert all(0.0003 <= lr <= 0.03 for lr in lrs)  # the preset's log-uniform range
    (summary,) = tmp_path.glob("outputs/multirun/*/*/summary.md")
    assert "ranked by val/acc, the metric the search optimised" in summary.read_text()
