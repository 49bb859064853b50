"""End to end: ``train.py`` and ``eval.py`` through Hydra, as users call them, with every trainer,
callbacks and logger option."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import DIVERGING, FAST, ROOT, read_metrics, run_script, subprocess_env

pytestmark = pytest.mark.slow


def only_run_dir(tmp_path: Path) -> Path:
    runs = [p.parent for p in tmp_path.glob("outputs/runs/*/*/metrics.json")]
    assert len(runs) == 1, runs
    return runs[0]


def test_subprocesses_run_this_checkouts_code(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", "import experiments; print(experiments.__file__)"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(out.strip()) == ROOT / "src" / "experiments" / "__init__.py"


def test_train_writes_metrics_tensorboard_and_checkpoints(tmp_path):
    proc = run_script([*FAST, "trainer.log_every_n_steps=5"], tmp_path, env={"PYTHONWARNINGS": "default"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "smaller than the logging interval" not in proc.stdout + proc.stderr
    run_dir = only_run_dir(tmp_path)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("test/acc=") and str(run_dir) in last

    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 1 and metrics["global_step"] == 20
    for key in ("test/acc", "test/loss", "val/acc", "val/loss", "train/loss", "wall_seconds"):
        assert isinstance(metrics[key], float), key
    assert 0.5 < metrics["test/acc"] <= 1.0  # 20 Adam steps already beat chance (0.1) by far
    assert f"{metrics['test/acc']:.4f}" in last

    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == [f"best-epoch00-acc{metrics['val/acc']:.4f}.ckpt", "last.ckpt"]
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)  # plain containers only
    assert state["hyper_parameters"]["model"]["hidden_sizes"] == [64, 64, 64] and state["global_step"] == 20

    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "train/loss_epoch",
        "train/acc",
        "val/loss",
        "val/acc",
        "test/loss",
        "test/acc",
        "final/test_acc",
    } <= tags
    assert events.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"])
    plugin_tags = events.Tags().get("tensors", []) + list(events.summary_metadata)
    assert any("_hparams_/session_start_info" in t for t in plugin_tags)
    assert "hp_metric" not in tags
    # Lightning writes the step loss at every log_every_n_steps-th batch (its x-axis counts from 0)
    assert [e.step for e in events.Scalars("train/loss")] == [4, 9, 14, 19]
    assert events.Scalars("train/loss_epoch")[-1].value == pytest.approx(metrics["train/loss"])
    assert metrics["history"]["train/loss"] == [pytest.approx(metrics["train/loss"])]
    assert metrics["history"]["val/acc"] == [pytest.approx(metrics["val/acc"])]
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "train.log").is_file()


def test_every_warning_a_run_printed_is_repeated_just_before_its_outcome(tmp_path):
    # a key nothing reads (a project warning) and too few batches for the logging interval (Lightning's)
    args = [*FAST, "+note=first_try", "trainer.limit_train_batches=3"]
    proc = run_script(args, tmp_path, env={"PYTHONWARNINGS": "default"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-4] == "2 warning(s) above, repeated:" and lines[-1].startswith("test/acc=")
    assert lines[-3] == "  note is set but train.py does not read it; it is kept in the run's config only"
    assert "smaller than the logging interval" in lines[-2]
    assert sum("note is set but" in line for line in lines) == 2  # printed where it arose, and repeated


def test_eval_tests_the_best_checkpoint_as_it_was_trained(tmp_path):
    # "best" by the lowest val/acc: the first epoch's weights, while training improves the later ones;
    # trained on [0, 1] pixels, which eval.py must use too, unless told otherwise
    proc = run_script(
        [
            *FAST,
            "trainer.max_epochs=3",
            "callbacks.model_checkpoint.mode=min",
            "data.normalize=unit",
            "trainer.limit_val_batches=null",
            "trainer.limit_test_batches=null",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = only_run_dir(tmp_path)
    metrics = read_metrics(run_dir)
    best = Path(metrics["best_ckpt"])
    assert best.name.startswith("best-epoch00") and metrics["best_val_acc"] == min(metrics["history"]["val/acc"])
    assert torch.load(best, weights_only=True)["datamodule_hyper_parameters"]["normalize"] == "unit"
    results = {}
    for name, ckpt, extra in (
        (best.name, best, []),
        ("last.ckpt", run_dir / "checkpoints" / "last.ckpt", []),
        ("standardized", best, ["data.normalize=standardize"]),
        ("run directory", run_dir, []),  # the checkpoint its run tested
    ):
        proc = run_script([f"ckpt_path={ckpt}", "progress_bar=false", *extra], tmp_path, script="eval.py")
        assert proc.returncode == 0, proc.stderr[-2000:]
        last = proc.stdout.strip().splitlines()[-1]
        results[name] = float(last.split()[0].removeprefix("test/acc="))
        (written,) = [p for p in tmp_path.glob("outputs/eval/*/*/eval.json") if str(p) in last]  # it says where
        assert json.loads(written.read_text())["ckpt_path"] == str(best if ckpt == run_dir else ckpt)
    # the run tested its best checkpoint on the full test set: eval of that file gives the same number
    assert results[best.name] == results["run directory"] == pytest.approx(metrics["test/acc"], abs=1e-4)
    # train.py and eval.py log in one format: a short time stamp and the level
    for log in (run_dir / "train.log", written.parent / "eval.log"):
        lines = log.read_text().splitlines()
        assert lines and all(re.match(r"\[\d\d:\d\d:\d\d\]\[(INFO|WARNING)\] ", line) for line in lines), lines
    assert results["last.ckpt"] != pytest.approx(metrics["test/acc"], abs=1e-4)
    assert results["standardized"] != pytest.approx(metrics["test/acc"], abs=1e-3)  # pixels scaled otherwise
    evaluated = [json.loads(p.read_text()) for p in tmp_path.glob("outputs/eval/*/*/eval.json")]
    assert sorted(e["test/acc"] for e in evaluated) == pytest.approx(sorted(results.values()), abs=1e-4)
    # eval.py tests on all 10,000 official test images: the accuracy counted by hand over them
    from experiments.data.idx import load
    from experiments.data.normalization import normalize
    from experiments.run.checkpoints import load_classifier

    test = load(raw=True)
    with torch.no_grad():
        predicted = load_classifier(best).eval()(normalize(test["test_x"], "unit")).argmax(1)
    assert len(test["test_y"]) == 10_000
    assert results[best.name] == pytest.approx((predicted == test["test_y"]).float().mean().item(), abs=1e-4)


def test_multirun_gives_each_job_its_own_directory(tmp_path):
    proc = run_script(["-m", "optimizer=sgd,adam", *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.parent for p in tmp_path.glob("outputs/multirun/*/*/*/metrics.json"))
    assert [j.name.split(",")[0] for j in jobs] == ["0_optimizer=sgd", "1_optimizer=adam"]
    assert {read_metrics(j)["choices"]["optimizer"] for j in jobs} == {"sgd", "adam"}


def test_two_runs_started_together_never_share_a_directory(tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), *FAST, "trainer.limit_train_batches=2"]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    runs = list(tmp_path.glob("outputs/runs/*/*/metrics.json"))
    assert len(runs) == 2 and runs[0].parent != runs[1].parent


def test_unknown_option_lists_the_valid_ones(tmp_path):
    proc = run_script(["activation=relux"], tmp_path)
    assert proc.returncode != 0
    assert "Available options" in proc.stderr and "leaky_relu" in proc.stderr and "alrelu" in proc.stderr


def test_damaged_data_file_stops_before_training(tmp_path):
    data = tmp_path / "mnist"
    data.mkdir()
    for f in (ROOT / "data" / "mnist").iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    target = data / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-100])
    proc = run_script([*FAST, f"data.root={data}"], tmp_path)
    assert proc.returncode == 2
    assert "t10k-images-idx3-ubyte.gz: checksum failed" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("outputs/runs/*/*/checkpoints"))
    assert read_metrics(only_run_dir(tmp_path))["status"] == "failed"


def test_the_progress_bar_shows_the_training_loss_and_compile_trains(tmp_path):
    args = [a for a in FAST if not a.startswith("callbacks.progress_bar")]
    proc = run_script([*args, "trainer.log_every_n_steps=5", "compile=true"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train/loss" in proc.stdout and "Epoch 1/1" in proc.stdout and "20/20" in proc.stdout
    metrics = read_metrics(only_run_dir(tmp_path))
    assert metrics["status"] == "completed" and metrics["test/acc"] > 0.5
    # compiled in place: the checkpoint keeps plain keys and loads into an uncompiled model
    state = torch.load(next((only_run_dir(tmp_path) / "checkpoints").glob("best-*.ckpt")), weights_only=True)
    assert "net.output.weight" in state["state_dict"]


def debug_run(tmp_path: Path) -> Path:
    runs = [p.parent for p in tmp_path.glob("outputs/debug/*/*/metrics.json")]  # apart from real runs
    assert len(runs) == 1 and not (tmp_path / "outputs" / "runs").exists(), runs
    return runs[0]


def test_debug_fdr_runs_one_batch_of_each_stage_and_keeps_nothing_a_real_run_would(tmp_path):
    proc = run_script(["debug=fdr", "print_config=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = debug_run(tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["global_step"] == 1 and metrics["best_ckpt"] is None
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", "metrics.json", "train.log"]  # no ckpt, no events


def test_debug_limit_runs_a_few_batches_of_each_stage_in_one_epoch(tmp_path):
    proc = run_script(["debug=limit", "print_config=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_metrics(debug_run(tmp_path))
    assert metrics["status"] == "completed" and metrics["global_step"] == 5 and metrics["epochs"] == 1
    assert Path(metrics["best_ckpt"]).is_file()  # the whole run, checkpoints included


def test_debug_overfit_drives_the_training_loss_of_a_few_fixed_batches_to_near_zero(tmp_path):
    proc = run_script(["debug=overfit", "print_config=false", "callbacks.progress_bar=null"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_metrics(debug_run(tmp_path))
    losses = metrics["history"]["train/loss"]
    assert metrics["global_step"] == 3 * len(losses) and losses[0] > 1.0 and losses[-1] < 0.01, losses[::10]


@pytest.mark.parametrize("profiler", ["SimpleProfiler", "AdvancedProfiler", "PyTorchProfiler"])
def test_debug_profiler_writes_its_report_into_the_run_directory_and_names_it(tmp_path, profiler):
    chosen = f"trainer.profiler._target_=lightning.pytorch.profilers.{profiler}"
    proc = run_script(["debug=profiler", chosen, "print_config=false", "callbacks.progress_bar=null"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = debug_run(tmp_path)
    report = run_dir / "fit-profile.txt"
    assert report.stat().st_size > 500 and f"profiler report: {report}" in proc.stdout.splitlines()[-3:]
    assert ("training_step" in report.read_text()) if profiler != "PyTorchProfiler" else True


def test_debug_anomaly_names_the_operation_that_made_a_nan(tmp_path, diverged_run):
    plain_dir, plain = diverged_run  # the same run without debug=anomaly says only that the loss is NaN
    traced = run_script(["debug=anomaly", *DIVERGING], tmp_path)
    assert plain.returncode == traced.returncode == 1, traced.stderr[-3000:]
    assert "train loss is nan" in read_metrics(plain_dir)["error"]
    error = read_metrics(debug_run(tmp_path))["error"]
    assert re.search(r"step \d+: Function '\w+Backward\d*' returned nan values", error), error
    assert error in traced.stderr


def test_trainer_debug_is_now_debug_limit(tmp_path):
    proc = run_script(["trainer=debug"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("Error: trainer=debug is now debug=limit")
    assert not (tmp_path / "outputs").exists()


def test_step_checkpoints_and_early_stopping_from_the_callbacks_group(tmp_path):
    # a constant learning rate of 0: val/acc never improves, so patience 1 stops after epoch 2 of 5
    proc = run_script(
        [
            *FAST,
            "callbacks=[step_checkpoint,early_stopping]",
            "callbacks.progress_bar=null",
            "callbacks.step_checkpoint.every_n_train_steps=7",
            "callbacks.early_stopping.patience=1",
            "trainer.max_epochs=5",
            "optimizer=sgd",
            "optimizer.lr=1e-12",
            "callbacks.early_stopping.min_delta=0.5",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 2 and metrics["global_step"] == 40
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 40 and any("EarlyStopping" in k for k in saved["callbacks"])
    assert sum("'every_n_train_steps': 7" in k for k in saved["callbacks"]) == 1


# One run read by the tests of its parts: the course's SGD override, and the CSV and MLflow loggers without TensorBoard
SGD_CSV_MLFLOW = [*FAST, "activation=relu", "optimizer=sgd", "optimizer.lr=0.1", "logger=[csv,mlflow]"]


@pytest.fixture(scope="module")
def sgd_csv_mlflow(tmp_path_factory) -> Path:
    """The run's directory; its outputs (``outputs/mlflow.db``) under the directory's ``outputs``: read only."""
    tmp = tmp_path_factory.mktemp("sgd_csv_mlflow")
    proc = run_script(SGD_CSV_MLFLOW, tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return only_run_dir(tmp)


def test_sgd_with_the_courses_override(sgd_csv_mlflow):
    metrics = read_metrics(sgd_csv_mlflow)
    assert metrics["status"] == "completed" and metrics["choices"]["optimizer"] == "sgd"
    assert metrics["choices"]["activation"] == "relu"


def test_csv_logger_records_the_test_accuracy(sgd_csv_mlflow):
    rows = list(csv.DictReader((sgd_csv_mlflow / "csv" / "metrics.csv").open()))
    tested = [float(r["test/acc"]) for r in rows if r.get("test/acc")]
    assert tested == [pytest.approx(read_metrics(sgd_csv_mlflow)["test/acc"])]
    assert not (sgd_csv_mlflow / "tensorboard").exists()


def test_mlflow_logger_records_the_run_in_a_local_store(sgd_csv_mlflow):
    from mlflow.tracking import MlflowClient

    outputs = sgd_csv_mlflow.parents[2]
    client = MlflowClient(tracking_uri=f"sqlite:///{outputs / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert run.data.metrics["test/acc"] == pytest.approx(read_metrics(sgd_csv_mlflow)["test/acc"])
    # the run's readable name: its overrides, as Hydra names a sweep's job directory
    assert read_metrics(sgd_csv_mlflow)["run_name"] == ",".join(sorted(SGD_CSV_MLFLOW[:4] + SGD_CSV_MLFLOW[6:]))
    assert (
        run.data.params["activation"] == "relu"
        and run.data.tags["mlflow.runName"] == read_metrics(sgd_csv_mlflow)["run_name"]
    )
    assert run.data.params["optimizer"] == "sgd"


def test_no_logger_and_no_callbacks_still_record_metrics_json_and_test_the_last_weights(tmp_path):
    proc = run_script([*(a for a in FAST if not a.startswith("callbacks.")), "callbacks=none", "logger=none"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["best_ckpt"] is None
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "tensorboard").exists()


def test_tags_and_a_run_name_reach_the_record_every_logger_in_its_own_form_and_the_report(small_sweep):
    from lightning.pytorch.core.saving import load_hparams_from_yaml
    from mlflow.tracking import MlflowClient
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    sweep, _ = small_sweep  # labelled tags=[baseline,lr_study] "run_name=first try", every logger on
    client = MlflowClient(tracking_uri=f"sqlite:///{sweep.parent / 'outputs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    jobs = sorted(sweep.glob("*_activation=*"))
    assert len(runs) == len(jobs) == 4
    for run_dir in jobs:
        record = read_metrics(run_dir)
        assert record["run_name"] == "first try" and record["tags"] == ["baseline", "lr_study"]
        csv_hparams = load_hparams_from_yaml(run_dir / "csv" / "hparams.yaml")  # the CSV logger's hparams
        assert csv_hparams["run_name"] == "first try" and csv_hparams["tags"] == "baseline,lr_study"
        events = EventAccumulator(str(run_dir / "tensorboard")).Reload()  # TensorBoard's HParams
        content = events.summary_metadata["_hparams_/session_start_info"].plugin_data.content
        hparams = HParamsPluginData.FromString(content).session_start_info.hparams
        assert hparams["run_name"].string_value == "first try" and hparams["tags"].string_value == "baseline,lr_study"
    for run in runs:  # MLflow's run name and run tags
        assert run.info.run_name == "first try" and {"baseline", "lr_study"} <= set(run.data.tags)
    report = (sweep / "summary.md").read_text()  # a row per configuration, its seeds together
    assert "| train s | tags | status |" in report and report.count("| baseline,lr_study | completed |") == 2


def test_every_key_that_differs_between_sweep_jobs_is_in_the_hparams_tab(tmp_path):
    import yaml
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    proc = run_script(
        [
            "-m",
            "scheduler=step",
            "scheduler.scheduler.gamma=0.5,0.9",
            "trainer.gradient_clip_val=null,0.5",
            *FAST,
            "trainer.limit_train_batches=5",
            "diagnostics=none",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sessions = []
    for tb in sorted(tmp_path.glob("outputs/multirun/*/*/*/tensorboard")):
        events = EventAccumulator(str(tb)).Reload()
        content = events.summary_metadata["_hparams_/session_start_info"].plugin_data.content
        hparams = HParamsPluginData.FromString(content).session_start_info.hparams
        values = {k: getattr(v, v.WhichOneof("kind")) for k, v in hparams.items()}
        sessions.append((values["scheduler.scheduler.gamma"], values["trainer.gradient_clip_val"]))
        assert values["scheduler"] == "step" and values["seed"] == 42
        saved = yaml.safe_load((tb / "hparams.yaml").read_text())
        assert saved["scheduler.scheduler.gamma"] == values["scheduler.scheduler.gamma"]
        assert {"final/test_acc", "final/val_acc"} <= set(events.Tags()["scalars"])
    assert sorted(sessions, key=str) == [(0.5, "None"), (0.5, 0.5), (0.9, "None"), (0.9, 0.5)]
