"""``hydra/launcher=fused`` end to end, as users run it: the results of separate runs, failures isolated."""

import math
import signal
import subprocess
import time

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import FAST, ROOT, compose_config, read_metrics, run_process, run_script, start_script
from experiments import names
from experiments.errors import BEFORE_TRAINING
from experiments.fused.grouping import fusion_problem
from experiments.run.checkpoints import read_checkpoint
from experiments.run.hparams import plain
from experiments.sweep_dir import Action, plan_job

pytestmark = pytest.mark.slow

# 8 configurations: two activations x two learning rates x two seeds; 16 steps per epoch, 2 epochs
SWEEP = [
    "activation=relu,tanh",
    "optimizer.lr=0.003,0.01",
    "seed=0,1",
    "data.limit_train=4096",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=4",
    "deterministic=true",
    "callbacks.progress_bar=null",
]


def jobs_in(sweep_dir) -> list:
    return sorted(
        (p for p in sweep_dir.iterdir() if p.is_dir() and p.name[0].isdigit()), key=lambda p: int(p.name.split("_")[0])
    )


def test_fused_members_agree_with_separate_runs_and_keep_their_outputs(tmp_path):
    fused_dir, basic_dir = tmp_path / "fused", tmp_path / "basic"
    with_bar = [a for a in SWEEP if not a.startswith("callbacks.progress_bar")]  # the group's trainer shows it
    fused = run_script(["-m", "hydra/launcher=fused", *with_bar, f"hydra.sweep.dir={fused_dir}"], tmp_path)
    assert fused.returncode == 0, fused.stderr[-3000:]
    assert "Epoch 2/2" in fused.stdout  # the last epoch of two, counted from one as the record counts
    assert "training jobs #0, #1, #2, #3, #4, #5, #6, #7 as one stacked model" in fused.stdout
    basic = run_script(["-m", *SWEEP, f"hydra.sweep.dir={basic_dir}"], tmp_path)
    assert basic.returncode == 0, basic.stderr[-3000:]
    pairs = list(zip(jobs_in(fused_dir), jobs_in(basic_dir)))
    assert len(pairs) == 8 and all(f.name == b.name for f, b in pairs)
    for fused_job, basic_job in pairs:
        f, b = read_metrics(fused_job), read_metrics(basic_job)
        assert f["status"] == b["status"] == "completed", fused_job.name
        assert f["fused_group"]["members"] == 8 and "fused_group" not in b
        assert set(f) - set(b) == {"fused_group", "group_seconds"} and set(b) <= set(f)
        assert set(f["history"]) == set(b["history"])
        measured = [m.name for stage in ("val", "test") for m in names.measured(stage).values()]
        assert {"val/f1", "test/f1"} <= set(measured)  # macro F1, defined once in names.py
        for key in (*measured, "best_val_acc"):  # each measure, computed on both paths by the same code
            assert abs(f[key] - b[key]) <= 0.002, (fused_job.name, key, f[key], b[key])
        for name in ("train/loss", "val/loss"):
            assert f["history"][name] == pytest.approx(b["history"][name], abs=1e-3), (fused_job.name, name)
        for name in ("diag/dead_frac/total", "diag/inactive_frac/total", "diag/born_dead_frac/total"):
            assert f[name] == pytest.approx(b[name], abs=0.01), (fused_job.name, name)
        assert f["diag/grad_norm/layer1"] == pytest.approx(b["diag/grad_norm/layer1"], rel=0.02)
        assert f["history"]["diag/grad_norm/total"] == pytest.approx(b["history"]["diag/grad_norm/total"], rel=0.02)
        # each layer's activation readings, at initialisation and every 4 steps of the 32, as the separate run's
        assert f["history"][names.ACTIVATION_STEPS] == b["history"][names.ACTIVATION_STEPS] == list(range(0, 33, 4))
        for key in (f"{names.ACTIVATION_MEAN}/layer1", f"{names.ACTIVATION_STD}/layer3"):
            assert f["history"][key] == pytest.approx(b["history"][key], abs=1e-3), (fused_job.name, key)
            assert f[key] == f["history"][key][-1]
        # named as the separate run names its own, from the member's own best epoch: the val/acc in the name may
        # differ from the separate run's by the summation order's last bits (the tolerance above; docs/fused.md)
        saved = sorted(p.name for p in (fused_job / "checkpoints").iterdir())
        twins = sorted(p.name for p in (basic_job / "checkpoints").iterdir())
        accs = f["history"]["val/acc"]
        best = f"best-epoch{accs.index(max(accs)):02d}-acc{f['best_val_acc']:.4f}.ckpt"
        assert saved == [best, "last.ckpt"] and twins[0].startswith("best-epoch") and twins[1] == "last.ckpt"
        assert f["best_ckpt"].startswith(str(fused_job)) and f["best_ckpt"].endswith(saved[0])
        events = EventAccumulator(str(fused_job / "tensorboard")).Reload()
        assert len(events.Scalars("val/acc")) == 2 and events.Scalars("test/acc")[-1].value == pytest.approx(
            f["test/acc"]
        )
        assert len(events.Scalars("diag/dead_frac/layer1")) == 2 and events.Scalars("grad_norm/layer1")
        assert [e.step for e in events.Scalars(f"{names.ACTIVATION_STD}/layer2")] == list(range(0, 33, 4))
        for run in (fused_job, basic_job):  # every metric in TensorBoard's scalars and as HParams' final value
            tags = set(EventAccumulator(str(run / "tensorboard")).Reload().Tags()["scalars"])
            for metric in names.METRICS:
                assert {metric.logged, "final/" + metric.name.replace("/", "_")} <= tags, (run.name, metric.name)
        assert "optimizer.lr" in yaml.safe_load((fused_job / "tensorboard" / "hparams.yaml").read_text())
    # the best checkpoint of a member is an ordinary checkpoint of this project (eval.py's loading of it:
    # test_grouping.py), marked with the group it trained in
    member = read_metrics(pairs[5][0])
    assert read_checkpoint(member["best_ckpt"])["fused_group"]["members"] == 8
    assert "8 jobs, 8 completed" in (fused_dir / "summary.md").read_text()
    for sweep in (fused_dir, basic_dir):  # the report: the table's summarized metrics, the CSV's every one
        header = next(line for line in (sweep / "summary.md").read_text().splitlines() if line.startswith("| # |"))
        assert all(f"| {name} |" in header for name in names.summarized())
        columns = (sweep / "summary.csv").read_text().splitlines()[0].split(",")
        assert set(names.recorded()) <= set(columns)


def fusing_activations() -> list[str]:
    """Every option of conf/activation/ that fuses, as the fused launcher decides it."""
    options = sorted(p.stem for p in (ROOT / "conf" / "activation").glob("*.yaml"))
    return [a for a in options if fusion_problem(plain(compose_config([f"activation={a}"]))) is None]


def test_every_activation_that_fuses_equals_its_separate_run_at_the_largest_learning_rate(tmp_path):
    """Two epochs of Adam at lr 0.01, each activation of the catalogue that fuses: final val/acc and test/acc
    within 0.002 of the separate run's (batched kernels change the last bits of each step)."""
    activations = fusing_activations()
    assert {"relu", "elu", "leaky_relu", "tanh", "prelu"} <= set(activations) and "rrelu" not in activations
    sweep = [f"activation={','.join(activations)}", "optimizer.lr=0.01", "seed=0", *SWEEP[3:], "diagnostics=none"]
    fused = run_script(["-m", "hydra/launcher=fused", *sweep, f"hydra.sweep.dir={tmp_path / 'fused'}"], tmp_path)
    assert fused.returncode == 0, fused.stderr[-3000:]
    assert "training jobs #0, #1, #2" in fused.stdout  # one group, not separate runs
    basic = run_script(["-m", *sweep, f"hydra.sweep.dir={tmp_path / 'basic'}"], tmp_path)
    assert basic.returncode == 0, basic.stderr[-3000:]
    pairs = list(zip(jobs_in(tmp_path / "fused"), jobs_in(tmp_path / "basic")))
    assert len(pairs) == len(activations)
    for fused_job, basic_job in pairs:
        f, b = read_metrics(fused_job), read_metrics(basic_job)
        assert f["status"] == b["status"] == "completed" and f["fused_group"]["members"] == len(pairs), fused_job.name
        for key in ("val/acc", "test/acc"):
            assert abs(f[key] - b[key]) <= 0.002, (fused_job.name, key, f[key], b[key])


def test_a_diverging_and_an_invalid_member_leave_the_others_training(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_script(
        [
            "-m",
            "hydra/launcher=fused",
            "optimizer=sgd",
            "optimizer.lr=0.05,1e4,-1",
            "model.batch_norm=false,true",
            "data.limit_train=2048",
            "trainer.max_epochs=2",
            "trainer.log_every_n_steps=2",
            "callbacks.progress_bar=null",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Error: 4 of 6 jobs did not complete (2 diverged, 2 failed)" in proc.stderr
    jobs = {job.name.split("_")[0]: read_metrics(job) for job in jobs_in(sweep_dir)}
    # batch norm does not fuse: jobs 1, 3 and 5 ran as under the basic launcher, and the log says why
    assert proc.stdout.count("runs on its own: model.batch_norm=true") == 3
    assert all("fused_group" not in jobs[n] for n in "135")
    good, diverged, invalid = jobs["0"], jobs["2"], jobs["4"]
    assert good["status"] == "completed" and good["fused_group"]["jobs"] == [0, 2]
    assert diverged["status"] == "diverged" and "train loss is nan" in diverged["error"]
    assert diverged["diverged_step"] % 2 == 0 and diverged["diverged_step"] < 16  # at a logging step of epoch 0
    assert invalid["status"] == "failed" and invalid["error"].startswith("optimizer.lr=-1 is invalid")
    assert len(good["history"]["train/loss"]) == 2 and good["global_step"] == 16
    assert all(math.isfinite(v) for v in good["history"]["train/loss"])


def test_ctrl_c_leaves_every_member_with_a_record_and_a_checkpoint(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=fused", "seed=0,1,2", "trainer.max_epochs=1000", "data.limit_train=8192"]
    proc = start_script(
        [*args, "callbacks.progress_bar=null", "diagnostics=none", f"hydra.sweep.dir={sweep_dir}"], tmp_path
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # until every member is training, and has saved one epoch
        records = [p for p in sweep_dir.glob("*/metrics.json")]
        if len(records) == 3 and all((p.parent / "checkpoints" / "last.ckpt").exists() for p in records):
            break
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    for job in jobs_in(sweep_dir):
        record = read_metrics(job)
        assert record["status"] == "interrupted" and "does not resume" in record["error"]
        checkpoint = read_checkpoint(record["interrupted_ckpt"])
        assert checkpoint["global_step"] == record["global_step"] > 0
        assert len(record["history"]["val/acc"]) >= 1


def test_ctrl_c_while_the_launcher_prepares_jobs_names_the_way_to_finish_the_sweep(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=fused", "seed=range(0,16)", *FAST, "diagnostics=none", f"hydra.sweep.dir={sweep_dir}"]
    proc = start_script(args, tmp_path, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list(sweep_dir.glob("0_*/.hydra/config.yaml")):  # the first job is prepared, fifteen to go
            assert time.time() < deadline and proc.poll() is None, "the first job was never prepared"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    assert "while the fused launcher prepared jobs" in stderr and f"finish={sweep_dir}" in stderr, stderr[-3000:]
    assert "before a run began" not in stderr and "Traceback" not in stderr
    assert not list(sweep_dir.glob("*/metrics.json"))  # stopped before the group trained: no record yet
    finished = run_script([f"finish={sweep_dir}"], tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert [read_metrics(job)["status"] for job in jobs_in(sweep_dir)] == ["completed"] * 16


def test_ctrl_c_in_the_groups_set_up_records_its_members_interrupted_and_names_the_way_on(tmp_path):
    # before training began: a member's checkpoint would hold its first weights, and no optimizer
    sweep_dir, inject = tmp_path / "sweep", "+diagnostics.inject._target_=fault_injection.SignalInSetUp"
    args = ["-m", "hydra/launcher=fused", "seed=0,1", *FAST, inject, f"hydra.sweep.dir={sweep_dir}"]
    proc = run_process(args, tmp_path, extra_paths=[ROOT / "tests"])
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "runs on its own" not in proc.stdout + proc.stderr  # the two jobs were one group
    assert f"finish={sweep_dir}" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for job in jobs_in(sweep_dir):
        record = read_metrics(job)
        assert record["status"] == "interrupted" and record["error"] == BEFORE_TRAINING, record
        assert "interrupted_ckpt" not in record and not (job / "checkpoints" / "interrupted.ckpt").exists()
        assert plan_job(int(job.name.split("_")[0]), job).action == Action.RERUN
    assert len(jobs_in(sweep_dir)) == 2


def test_optuna_hands_its_trials_to_the_fused_launcher(tmp_path):
    proc = run_script(
        [
            "hparams_search=lr_width",
            "hydra/launcher=fused",
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.n_jobs=2",
            "search.width=32",
            "search.depth=1",  # the search over lr alone:
            "hydra.sweeper.params={optimizer.lr:'tag(log, interval(0.0003, 0.03))'}",
            *FAST,
            "diagnostics=none",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # two batches of two trials, each trained at once, and the report says so
    assert (
        "fused-0: training jobs #0, #1 as one" in proc.stdout and "fused-2: training jobs #2, #3 as one" in proc.stdout
    )
    (summary,) = tmp_path.glob("outputs/multirun/*/*/summary.md")
    assert "group's): jobs 0-1; jobs 2-3." in summary.read_text()
    jobs = sorted(tmp_path.glob("outputs/multirun/*/*/[0-9]*_*"), key=lambda p: int(p.name.split("_")[0]))
    assert len(jobs) == 4 and all(read_metrics(j)["status"] == "completed" for j in jobs)
    (optimization,) = tmp_path.glob("outputs/multirun/*/*/optimization_results.yaml")
    best = yaml.safe_load(optimization.read_text())["best_value"]
    assert best == pytest.approx(max(read_metrics(j)["val/acc"] for j in jobs))
