"""``hydra/launcher=ray`` and the fused launcher's ``on_ray``, against a real Ray cluster that the tests start on
127.0.0.1 (``ray start --head``) and stop whatever happens; and the cluster Ray starts inside a sweep."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF, FAST, ROOT, read_metrics, run_process, start_script, subprocess_env
from experiments.names import Status, finished
from experiments.reports.table import job_dirs

pytest.importorskip("ray")

RAY = str(Path(sys.executable).with_name("ray"))
# no usage stats; no token (Ray 2.60 makes one in ~/.ray for a cluster ray.init starts, and then requires it)
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0", "RAY_AUTH_MODE": "disabled"}


@pytest.fixture
def ray_temp():
    """Ray's session files, in a short path: its socket paths must stay within 107 bytes."""
    path = tempfile.mkdtemp(prefix="ray-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A head node with 2 CPUs on 127.0.0.1, no dashboard, no usage stats; its workers import this checkout."""
    address = f"127.0.0.1:{free_port()}"
    temp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must stay within 107 bytes
    env = subprocess_env(env=QUIET)
    command = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={address.split(':')[1]}"]
    command += ["--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stderr[-2000:]
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def ran_in_ray_workers(stdout: str, task: str, records: list[dict]) -> bool:
    """Ray prefixes what a task prints with its function and worker pid: each job's own line, with its pid."""
    return all(
        re.search(rf"\({task} pid={r['pid']}(, ip=[\d.]+)?\).*test/acc=.*run_dir={re.escape(r['run_dir'])}", stdout)
        for r in records
    )


@pytest.mark.slow
def test_a_sweep_runs_each_job_as_a_task_in_the_clusters_workers(tmp_path, cluster):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={cluster}", "activation=relu,tanh"]
    proc = run_process([*args, "seed=1,2", *FAST, f"hydra.sweep.dir={sweep_dir}"], tmp_path, env=QUIET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [read_metrics(j) for j in job_dirs(sweep_dir)]
    assert len(records) == 4 and all(r["status"] == "completed" for r in records)
    assert all(r["threads"] == 1 and r["host"] == socket.gethostname() for r in records)  # num_cpus: 1
    assert all(Path(r["run_dir"]).is_relative_to(sweep_dir) for r in records)  # not the workers' directory
    assert ran_in_ray_workers(proc.stdout + proc.stderr, "run_job_in_task", records)
    assert all(
        j.joinpath(".hydra", "config.yaml").exists() and list(j.glob("tensorboard/events.*"))
        for j in job_dirs(sweep_dir)
    )
    summary = (sweep_dir / "summary.csv").read_text()
    assert summary.count("completed") == 4


@pytest.mark.slow
def test_a_task_asks_for_more_cpus_and_its_job_takes_that_many_threads(tmp_path, cluster):
    sweep_dir = tmp_path / "sweep"
    args = [
        "-m",
        "hydra/launcher=ray",
        f"hydra.launcher.ray.init.address={cluster}",
        "hydra.launcher.ray.remote.num_cpus=2",
    ]
    proc = run_process([*args, "seed=1", *FAST, f"hydra.sweep.dir={sweep_dir}"], tmp_path, env=QUIET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [read_metrics(j)["threads"] for j in job_dirs(sweep_dir)] == [2]


@pytest.mark.slow
def test_fused_groups_are_ray_tasks_and_equal_the_in_process_fused_sweep(tmp_path, cluster):
    common = ["-m", "hydra/launcher=fused", "activation=relu,tanh", "data.batch_size=128,256", "deterministic=true"]
    common += [*FAST, "hydra.launcher.ray.remote.num_cpus=2"]  # two groups (one per batch size) of two members
    on_ray = [*common, "hydra.launcher.on_ray=true", f"hydra.launcher.ray.init.address={cluster}"]
    proc = run_process([*on_ray, f"hydra.sweep.dir={tmp_path / 'ray'}"], tmp_path, env=QUIET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    here = run_process([*common, f"hydra.sweep.dir={tmp_path / 'here'}"], tmp_path, env=QUIET)
    assert here.returncode == 0, here.stderr[-3000:]
    remote, local = [[read_metrics(j) for j in job_dirs(tmp_path / d)] for d in ("ray", "here")]
    assert len(remote) == 4 and {r["fused_group"]["name"] for r in remote} == {"fused-0", "fused-1"}
    assert ran_in_ray_workers(proc.stdout + proc.stderr, "_fused_in_task", remote)
    for r, h in zip(remote, local):
        assert r["fused_group"]["members"] == h["fused_group"]["members"] == 2
        for key in ("val/acc", "test/acc"):
            assert abs(r[key] - h[key]) <= 0.002, (key, r[key], h[key])


@pytest.mark.slow
def test_without_an_address_ray_starts_a_cluster_of_this_machine_for_the_sweep(tmp_path, ray_temp):
    sweep_dir = tmp_path / "sweep"
    env = QUIET
    args = ["-m", "hydra/launcher=ray", "activation=relu,tanh", *FAST, f"hydra.sweep.dir={sweep_dir}"]
    proc = run_process([*args, f"+hydra.launcher.ray.init._temp_dir={ray_temp}"], tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [read_metrics(j) for j in job_dirs(sweep_dir)]
    assert [r["status"] for r in records] == ["completed"] * 2
    assert ran_in_ray_workers(proc.stdout + proc.stderr, "run_job_in_task", records)


@pytest.mark.slow
def test_an_address_where_no_cluster_answers_is_one_line_before_any_directory(tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={address}", "seed=1,2"]
    proc = run_process([*args, f"hydra.sweep.dir={sweep_dir}"], tmp_path, env=QUIET)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"Error: hydra.launcher.ray.init.address='{address}' is invalid: must be the address")
    assert "ray start --head" in proc.stderr and not sweep_dir.exists()


def start_sweep(tmp_path: Path, args: list[str]) -> subprocess.Popen:
    return start_script(args, tmp_path, env=QUIET)


def training(sweep_dir: Path, deadline: float = 240) -> dict:
    """The record of the first job that is training, once it is."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for path in sweep_dir.glob("*/metrics.json"):
            record = json.loads(path.read_text())
            if record.get("status") == "running" and (path.parent / "tensorboard").exists():
                return record
        time.sleep(0.1)
    raise AssertionError("no job started training")


WORKER_LINE = re.compile(r"(\x1b\[[0-9;]*m)?\(\w+ pid=\d+[^)]*\)")  # Ray's prefix: "(run_job_in_task pid=7)"
LONG = ["trainer.limit_train_batches=400", "trainer.max_epochs=3", "trainer.limit_val_batches=1"]
LONG += ["trainer.limit_test_batches=1", "print_config=false", "callbacks.progress_bar=null"]


@pytest.mark.slow
def test_a_worker_killed_while_it_trains_leaves_its_job_failed_and_the_others_finish(tmp_path, cluster):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={cluster}", "activation=relu,tanh,elu"]
    proc = start_sweep(tmp_path, [*args, *LONG, f"hydra.sweep.dir={sweep_dir}"])
    try:
        victim = training(sweep_dir)
        os.kill(victim["pid"], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(stderr[-2000:])
    assert proc.returncode == 1
    records = {r["run_dir"]: r for r in (read_metrics(j) for j in job_dirs(sweep_dir))}
    lost = records.pop(victim["run_dir"])
    assert lost["status"] == "failed" and "its Ray task ended without a result" in lost["error"]
    assert [r["status"] for r in records.values()] == ["completed"] * 2
    assert "failed" in (sweep_dir / "summary.md").read_text()
    assert f"Error: 1 of 3 jobs did not complete (1 failed): see {sweep_dir / 'summary.md'}" in stderr.splitlines()


@pytest.mark.slow
def test_ctrl_c_on_the_driver_stops_the_clusters_tasks_and_records_them(tmp_path, cluster):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={cluster}", "activation=relu,tanh,elu"]
    proc = start_sweep(tmp_path, [*args, *LONG, f"hydra.sweep.dir={sweep_dir}"])
    try:
        training(sweep_dir)
        proc.send_signal(signal.SIGINT)  # the driver only: the cluster's workers are not in its process group
        _, stderr = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    # the driver's last line; a worker's own lines, which Ray forwards late with its prefix, may follow it
    driver = [line for line in stderr.strip().splitlines() if not WORKER_LINE.match(line)]
    assert driver[-1] == (
        f"Interrupted (Ctrl-C): 3 jobs' Ray tasks cancelled and recorded; finish the sweep with "
        f"python {ROOT / 'train.py'} finish={sweep_dir}"
    )
    records = [read_metrics(j) for j in job_dirs(sweep_dir)]  # the job not yet started has no directory
    assert records and all(r["status"] == "interrupted" and r.get("global_step", 0) < 645 for r in records), records


@pytest.mark.parametrize("left", [None, *Status])
def test_a_task_that_died_records_its_unfinished_jobs_and_leaves_finished_ones(left, tmp_path):
    from hydra_plugins.ray_jobs.ray_jobs import _record

    run_dir = tmp_path / "0_seed=1"
    run_dir.mkdir()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):  # a job's config as the launcher has it
        config = compose("config", overrides=["seed=1"], return_hydra_config=True)
    config.hydra.sweep.dir, config.hydra.sweep.subdir = str(tmp_path), run_dir.name
    if left is not None:  # a record as the job left it: None, killed while training (running), in its test (trained)
        (run_dir / "metrics.json").write_text(json.dumps({"status": str(left), "test/acc": 0.5}))
    _record([(0, config)], Status.INTERRUPTED, "its Ray task was cancelled (Ctrl-C on the driver)")
    record = read_metrics(run_dir)
    if left in finished():
        assert record == {"status": str(left), "test/acc": 0.5}
    else:
        assert record["status"] == "interrupted" and record["error"].endswith("(Ctrl-C on the driver)")
        assert record["overrides"] == ["seed=1"]  # the job's own, as its record names them
