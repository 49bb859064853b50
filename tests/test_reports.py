"""The sweep report, from a small real sweep and from hand-made job records."""

import csv
import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, subprocess_env
from experiments.reports.cli import build_report
from experiments.reports.table import group_configs, label_configs


@pytest.fixture
def sweep(small_sweep):
    return small_sweep


@pytest.mark.slow
def test_report_is_written_at_the_end_of_the_multirun(sweep):
    sweep_dir, proc = sweep
    for name in (
        "summary.csv",
        "summary.md",
        "val_acc_per_epoch.png",
        "test_acc.png",
        "dead_units.png",
        "grad_norms.png",
    ):
        assert (sweep_dir / name).stat().st_size > (10_000 if name.endswith(".png") else 500), name
    assert not (sweep_dir / "dead_vs_lr.png").exists()  # the learning rate was not swept
    assert (sweep_dir / "test_acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Sweep report" in proc.stdout


@pytest.mark.slow
def test_csv_has_one_row_per_job_with_its_metrics(sweep):
    sweep_dir, _ = sweep
    rows = list(csv.DictReader((sweep_dir / "summary.csv").read_text().splitlines()))
    assert len(rows) == 4
    for row in rows:
        job = json.loads((sweep_dir / row["job"] / "metrics.json").read_text())
        assert float(row["test/acc"]) == pytest.approx(job["test/acc"])
        assert row["status"] == "completed" and float(row["wall_seconds"]) > 0
        assert "diag/dead_frac/total" in row and row["activation"] in ("relu", "alrelu")


@pytest.mark.slow
def test_markdown_aggregates_seeds_per_configuration(sweep):
    sweep_dir, _ = sweep
    md = (sweep_dir / "summary.md").read_text()
    for act in ("relu", "alrelu"):
        accs = [json.loads(p.read_text())["test/acc"] for p in sweep_dir.glob(f"*activation={act},*/metrics.json")]
        assert len(accs) == 2
        cell = f"{statistics.fmean(accs):.4f} ± {statistics.stdev(accs):.4f}"
        line = next(line for line in md.splitlines() if f"`activation={act}`" in line)
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
    rewrite(running, status="running")
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.reports", str(copy)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr
    md = (copy / "summary.md").read_text()
    assert f"`{killed.name}`: **incomplete**" in md and f"`{running.name}`: **incomplete**" in md
    rows = list(csv.DictReader((copy / "summary.csv").read_text().splitlines()))
    assert sorted(r["status"] for r in rows) == ["completed"] * 2 + ["incomplete"] * 2


@pytest.mark.slow
def test_report_command_names_a_wrong_directory(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.reports", str(tmp_path / "nope")], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode != 0 and "nope is not a directory" in proc.stderr


def job(overrides: list[str], status: str = "completed", acc: float = 0.9) -> dict:
    return {"job": "x", "status": status, "test/acc": acc, "_overrides": dict(o.split("=") for o in overrides)}


def test_seed_aggregation_mean_and_std_and_failures_are_kept():
    jobs = [
        job(["activation=relu", "seed=0"], acc=0.90),
        job(["activation=relu", "seed=1"], acc=0.94),
        job(["activation=elu", "seed=0"], acc=0.97),
        job(["activation=elu", "seed=1"], "diverged", math.nan),
    ]
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


def test_labels_keep_only_swept_keys_shortened_and_numbers_rounded():
    jobs = [
        job(["optimizer.lr=0.005873669160363897", "activation=relu", "trainer.max_epochs=2", "seed=0"]),
        job(["optimizer.lr=0.0123456", "activation=elu", "trainer.max_epochs=2", "seed=1"]),
    ]
    assert label_configs(jobs) == ["trainer.max_epochs=2"]
    assert [j["config"] for j in jobs] == ["activation=relu,lr=0.00587", "activation=elu,lr=0.0123"]
    assert jobs[0]["swept"] == {"activation": "relu", "optimizer.lr": "0.005873669160363897"}  # the CSV keeps all


def test_labels_keep_the_full_key_where_two_swept_keys_share_a_last_part():
    jobs = [
        job(["optimizer.momentum=0.9", "scheduler.momentum=1", "width=64"]),
        job(["optimizer.momentum=0.5", "scheduler.momentum=2", "width=128"]),
    ]
    label_configs(jobs)
    assert jobs[0]["config"] == "optimizer.momentum=0.9,scheduler.momentum=1,width=64"


@pytest.mark.parametrize(
    "value, text", [(0.000123, "1.23e-04"), (0.9531, "0.9531"), (0.0, "0.0000"), (2.5e-9, "2.50e-09")]
)
def test_small_values_print_in_scientific_notation_not_as_zero(value, text):
    from experiments.reports.table import _fmt

    assert _fmt((value, 0.0)) == text


def test_an_optuna_sweep_ranks_by_its_optimised_metric_and_a_grid_by_test_accuracy(tmp_path):
    from experiments.reports.table import sweep_settings

    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper\n"
        "optimized_metric: val/acc\n"
    )
    assert sweep_settings(tmp_path)["rank_by"] == "val/acc"
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper\n"
        "optimized_metric: val/acc\n"
    )
    assert sweep_settings(tmp_path)["rank_by"] == "test/acc"
    jobs = [job(["lr=1"], acc=0.95), job(["lr=2"], acc=0.90)]
    jobs[0]["val/acc"], jobs[1]["val/acc"] = 0.80, 0.85
    jobs[0]["val/loss"], jobs[1]["val/loss"] = 0.3, 0.4
    label_configs(jobs)
    assert [g["config"] for g in group_configs(jobs)] == ["lr=1", "lr=2"]
    assert [g["config"] for g in group_configs(jobs, "val/acc")] == ["lr=2", "lr=1"]
    assert [g["config"] for g in group_configs(jobs, "val/loss")] == ["lr=1", "lr=2"]  # a loss: lowest first


def history_job(activation: str, lr: str, seed: int, dead: list[float], grads: list[float]) -> dict:
    """A completed job's record as a run writes it: per-epoch history of dead fractions and gradient norms."""
    layers = range(1, len(dead) + 1)
    history = {
        "val/acc": [0.5, 0.8],
        **{f"diag/dead_frac/layer{i}": [d / 2, d] for i, d in zip(layers, dead)},
        **{f"diag/grad_norm/layer{i}": [g, g] for i, g in zip(layers, grads)},
        "train/loss": [2.0, 1.0 / (seed + 1)],
        # activation readings at steps 0, 5 and 10: each layer's spread at initialisation 0.2 / layer, at the end
        # 0.05 x (seed + 1); means falling to 0.1 x layer
        "diag/act_step": [0, 5, 10],
        **{f"diag/act_mean/layer{i}": [0.5, 0.4, 0.1 * i] for i in layers},
        **{f"diag/act_std/layer{i}": [0.2 / i, 0.1, 0.05 * (seed + 1)] for i in layers},
    }
    return {
        "job": f"{activation}{lr}{seed}",
        "status": "completed",
        "test/acc": 0.9,
        "val/acc": 0.9,
        "history": history,
        **{f"diag/dead_frac/layer{i}": d for i, d in zip(layers, dead)},
        **{f"diag/born_dead_frac/layer{i}": 0.0 for i in layers},
        "_overrides": {"activation": activation, "optimizer.lr": lr, "seed": str(seed)},
    }


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """The plots of a hand-made 2 x 2 x 2 sweep, and each figure as it was about to be saved."""
    import experiments.reports.plots as plots
    import experiments.reports.style as style

    jobs = [
        history_job(a, lr, s, [0.9, 0.5, 0.1] if a == "relu" else [0, 0, 0], [1e-6, 1e-3, 1.0])
        for a in ("relu", "leaky_relu")
        for lr in ("0.001", "0.1")
        for s in (0, 1)
    ]
    label_configs(jobs)
    groups = group_configs(jobs)
    figures = {}
    save = style.save
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(style, "save", lambda fig, path: figures.setdefault(path.name, fig) and save(fig, path))
        return plots.write_plots(jobs, groups, tmp_path_factory.mktemp("plots")), figures


def test_every_picture_is_drawn_with_a_readable_size(drawn):
    import matplotlib.image

    paths, _ = drawn
    expected = {"curves", "train_loss", "bars", "dead_units", "grad_norms", "dead_vs_lr", "activations"}
    assert set(paths) == {*expected, "activation_spread"}
    for path in paths.values():
        height, width = matplotlib.image.imread(path).shape[:2]
        assert 300 <= width <= 2500 and 200 <= height <= 2000, (path.name, width, height)


def test_the_accuracy_axis_starts_at_zero_with_the_chance_level_marked(drawn):
    _, figures = drawn
    ax = figures["test_acc.png"].axes[0]
    assert ax.get_xlim()[0] == 0
    assert any(list(line.get_xdata()) == [0.1, 0.1] for line in ax.lines)  # the chance line


def test_gradient_norms_are_on_a_log_scale_per_layer_and_dead_units_per_epoch_from_initialisation(drawn):
    _, figures = drawn
    ax = figures["grad_norms.png"].axes[0]
    assert ax.get_yscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    assert list(ax.lines[0].get_ydata()) == pytest.approx([1e-6, 1e-3, 1.0])
    panels = [a for a in figures["dead_units.png"].axes if a.get_visible()]
    assert len(panels) == 4  # one per configuration
    relu = next(a for a in panels if a.get_title().startswith("activation=relu, lr=0.001"))
    assert [list(line.get_ydata()) for line in relu.lines] == [
        [0.0, 0.45, 0.9],
        [0.0, 0.25, 0.5],
        [0.0, pytest.approx(0.05), pytest.approx(0.1)],
    ]
    ticks = figures["dead_vs_lr.png"].axes[0]
    assert ticks.get_xscale() == "log"


def test_training_loss_per_epoch_is_each_configurations_mean_over_seeds_on_a_log_scale(drawn):
    _, figures = drawn
    ax = figures["train_loss_per_epoch.png"].axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "training loss (log scale)"
    assert len(ax.lines) == 4 and all(list(line.get_ydata()) == [2.0, 0.75] for line in ax.lines)  # 1/1, 1/2
    assert list(ax.lines[0].get_xdata()) == [1, 2]


def test_activation_spread_is_each_layers_std_at_the_first_reading_and_the_last(drawn):
    _, figures = drawn
    at_start, at_end = figures["activation_spread.png"].axes
    assert (at_start.get_title(), at_end.get_title()) == ("at initialisation", "after training")
    assert at_start.get_yscale() == "log" and len(at_start.lines) == len(at_end.lines) == 4
    for line in at_start.lines:
        assert list(line.get_ydata()) == pytest.approx([0.2, 0.1, 0.2 / 3])  # 0.2 / layer
    for line in at_end.lines:
        assert list(line.get_ydata()) == pytest.approx([0.075] * 3)  # the mean of seeds 0 and 1
    assert list(at_start.lines[0].get_xdata()) == [1, 2, 3]


def test_activations_over_training_draw_each_layers_mean_with_its_spread_per_configuration(drawn):
    _, figures = drawn
    panels = [a for a in figures["activations.png"].axes if a.get_visible()]
    assert len(panels) == 4
    for ax in panels:
        assert [list(line.get_xdata()) for line in ax.lines] == [[0, 5, 10]] * 3
        for i, line in enumerate(ax.lines, 1):
            assert list(line.get_ydata()) == pytest.approx([0.5, 0.4, 0.1 * i])
        # the band of layer 1 (the first seed: 0.05 at the end) from mean - std to mean + std
        band = ax.collections[0].get_paths()[0].vertices
        assert band[:, 1].min() == pytest.approx(0.05) and band[:, 1].max() == pytest.approx(0.7)


def drawn_alone(draw, groups, tmp_path):
    """The figure one plot function saves."""
    import experiments.reports.style as style

    figures = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(style, "save", lambda fig, path: figures.append(fig) or path)
        draw(groups, tmp_path / "plot.png")
    (figure,) = figures
    figure.canvas.draw()  # the tick labels as a reader sees them
    return figure


def test_curves_a_hair_apart_are_drawn_close_and_each_line_is_told_apart(tmp_path):
    import experiments.reports.plots as plots
    from experiments.reports.style import MIN_ACCURACY_SPAN

    jobs = [history_job(a, "0.01", 0, [0.1], [0.3]) for a in ("relu", "elu", "tanh")]
    for job, acc in zip(jobs, (0.9449, 0.9455, 0.9460)):
        job["history"]["val/acc"] = [acc - 0.0005, acc]
    label_configs(jobs)
    ax = drawn_alone(lambda g, p: plots.epoch_curves(g, p, "val/acc"), group_configs(jobs), tmp_path).axes[0]
    low, high = ax.get_ylim()
    assert high - low == pytest.approx(MIN_ACCURACY_SPAN) and low < 0.9444 and high > 0.9460
    styles = {(line.get_marker(), line.get_linestyle(), line.get_fillstyle()) for line in ax.lines}
    assert len(ax.lines) == 3 and len(styles) == 3


@pytest.mark.parametrize("grads", [[0.3, 0.4, 0.5], [1e-6, 1e-3, 1.0]])
def test_gradient_norm_ticks_read_as_plain_numbers(grads, tmp_path):
    import experiments.reports.layer_plots as layer_plots

    jobs = [history_job("relu", "0.01", 0, [0.1, 0.1, 0.1], grads)]
    label_configs(jobs)
    ax = drawn_alone(layer_plots.grad_norms, group_configs(jobs), tmp_path).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"[0-9.e+-]+", text) for text in labels), labels
    if grads[0] == 0.3:  # within a decade: the minor ticks are labelled, 0.4 among them
        assert "0.4" in labels


def test_the_csv_has_one_column_per_swept_key(tmp_path):
    from experiments.reports.summary_csv import write_csv

    jobs = [
        job(["optimizer.lr=0.01", "activation=relu", "seed=0"]),
        job(["optimizer.lr=0.1", "activation=elu", "seed=0"]),
    ]
    label_configs(jobs)
    write_csv(jobs, tmp_path / "summary.csv")
    rows = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    assert [(r["activation"], r["optimizer.lr"]) for r in rows] == [("relu", "0.01"), ("elu", "0.1")]


def fake_sweep(root: Path) -> Path:
    """A sweep directory as Hydra and train.py leave it: job dirs with .hydra/overrides.yaml and metrics.json
    (two seeds of relu, one of elu that diverged, one job killed before writing, one still 'running')."""
    import yaml

    records = [
        (
            ["activation=relu", "seed=0"],
            {
                "status": "completed",
                "test/acc": 0.91,
                "val/acc": 0.90,
                "test/loss": 0.3,
                "wall_seconds": 9.0,  # the sweep's first job: the process's start-up on its clock
                "history": {"epoch_seconds": [1.0, 1.0]},
                "diag/grad_norm/layer1": 2e-5,
            },
        ),
        (
            ["activation=relu", "seed=1"],
            {
                "status": "completed",
                "test/acc": 0.93,
                "val/acc": 0.92,
                "test/loss": 0.25,
                "wall_seconds": 4.0,
                "history": {"epoch_seconds": [1.5, 1.5]},
                "diag/grad_norm/layer1": 4e-5,
            },
        ),
        (["activation=elu", "seed=0"], {"status": "diverged", "error": "diverged at epoch 0, step 5"}),
        (["activation=elu", "seed=1"], None),
        (["activation=tanh", "seed=0"], {"status": "running"}),
    ]
    for i, (overrides, metrics) in enumerate(records):
        job = root / f"{i}_{','.join(overrides)}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        if metrics is not None:
            (job / "metrics.json").write_text(json.dumps({**metrics, "overrides": overrides}))
    return root


def test_jobs_are_read_with_their_seed_overrides_and_unfinished_status(tmp_path):
    from experiments.reports.table import job_dirs, read_job

    jobs = [read_job(d) for d in job_dirs(fake_sweep(tmp_path))]
    assert [j["job"].split("_")[0] for j in jobs] == ["0", "1", "2", "3", "4"]  # in job-number order
    assert [j["status"] for j in jobs] == ["completed", "completed", "diverged", "incomplete", "incomplete"]
    assert [j["seed"] for j in jobs] == ["0", "1", "0", "1", "0"]
    assert jobs[0]["overrides"] == "activation=relu seed=0"
    assert jobs[0]["_overrides"] == {"activation": "relu", "seed": "0"} and jobs[0]["test/acc"] == 0.91


def test_the_markdown_report_ranks_aggregates_and_lists_what_did_not_complete(tmp_path):
    from experiments.reports.cli import build_report, incomplete_summary

    sweep = fake_sweep(tmp_path)
    md = build_report(sweep)["md"].read_text().splitlines()
    assert md[0] == f"# Sweep report: {sweep}"
    assert md[2].startswith("5 jobs, 2 completed. Mean ± standard deviation over the seeds that completed; best test")
    assert md[4] == "Common to every job: `(no overrides)`"
    header = next(line for line in md if line.startswith("| # |"))
    assert header.split(" | ")[:6] == ["| #", "configuration", "seeds ok", "test/acc", "val/acc", "test/loss"]
    rows = [line for line in md if line.startswith("| 1 |") or line.startswith("| 2 |") or line.startswith("| 3 |")]
    assert rows[0].startswith("| 1 | `activation=relu` | 2/2 | 0.9200 ± 0.0141 | 0.9100 ± 0.0141 | 0.2750 ± 0.0354 |")
    # train s: the epochs' seconds (2.0 and 3.0), not the wall time the first job's start-up inflates
    assert "3.00e-05 ± 1.41e-05" in rows[0] and "| 2.5 ± 0.7 | completed |" in rows[0]
    assert rows[1].split(" | ")[1:3] == ["`activation=elu`", "0/2"] and "diverged,incomplete" in rows[1]
    assert md[md.index("## Jobs that did not complete") + 2 :] == [
        "- `2_activation=elu,seed=0`: **diverged** diverged at epoch 0, step 5",
        "- `3_activation=elu,seed=1`: **incomplete**",
        "- `4_activation=tanh,seed=0`: **incomplete**",
    ]
    assert incomplete_summary(sweep) == "3 of 5 jobs did not complete (1 diverged, 2 incomplete)"
    assert not any("stacked model" in line for line in md)  # no job trained fused


def test_fused_members_are_named_with_their_group_whose_train_time_they_share(tmp_path):
    from experiments.reports.cli import build_report

    sweep = fake_sweep(tmp_path)
    for job in sorted(sweep.iterdir())[:2]:
        rewrite(job, fused_group={"name": "fused-0", "members": 3, "jobs": [0, 1, 2]})
    md = build_report(sweep)["md"].read_text()
    assert (
        "Trained together as one stacked model (`hydra/launcher=fused`; a member's train s is its group's): jobs 0-2."
    ) in md


def test_a_sweep_that_completed_has_nothing_to_report_missing(tmp_path):
    from experiments.reports.cli import build_report, incomplete_summary

    sweep = fake_sweep(tmp_path)
    for job in sorted(sweep.iterdir())[2:]:
        import shutil

        shutil.rmtree(job)
    assert incomplete_summary(sweep) is None
    assert "Jobs that did not complete" not in build_report(sweep)["md"].read_text()


def test_the_hydra_callback_writes_the_report_and_exits_1_when_jobs_did_not_complete(tmp_path, capsys):
    from omegaconf import OmegaConf

    from experiments.reports.cli import SweepReport

    sweep = fake_sweep(tmp_path)
    with pytest.raises(SystemExit) as stop:
        SweepReport().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert stop.value.code == 1
    out, err = capsys.readouterr()
    assert f"Sweep report: {sweep / 'summary.md'}" in out and "`activation=relu`" in out
    assert err.strip() == f"Error: 3 of 5 jobs did not complete (1 diverged, 2 incomplete): see {sweep / 'summary.md'}"


def test_the_report_command_rebuilds_in_process(tmp_path, monkeypatch, capsys):
    from experiments.reports.cli import main

    sweep = fake_sweep(tmp_path)
    monkeypatch.setattr(sys, "argv", ["report", str(sweep)])
    main()
    out = capsys.readouterr().out
    assert out.startswith(f"# Sweep report: {sweep}") and f"wrote {sweep / 'summary.csv'}" in out
    monkeypatch.setattr(sys, "argv", ["report", str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("Error: ") and "missing is not a directory" in err


def test_without_multirun_yaml_the_ranking_comes_from_the_first_jobs_hydra_config(tmp_path):
    from experiments.reports.table import sweep_settings

    sweep = fake_sweep(tmp_path)
    first = sorted(sweep.iterdir())[0] / ".hydra"
    (first / "hydra.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper\n"
    )
    (first / "config.yaml").write_text("optimized_metric: val/loss\n")
    assert sweep_settings(sweep) == {"rank_by": "val/loss", "optimizing": True, "show": ()}
    (first / "config.yaml").write_text("optimized_metric: not/a_metric\n")  # unknown: test accuracy
    assert sweep_settings(sweep)["rank_by"] == "test/acc"
    (first / "hydra.yaml").write_text("hydra:\n  sweeper:\n    _target_: BasicSweeper\n")
    (first / "config.yaml").write_text("optimized_metric: val/loss\n")
    assert sweep_settings(sweep) == {"rank_by": "test/acc", "optimizing": False, "show": ()}
    assert sweep_settings(tmp_path / "empty") == {"rank_by": "test/acc", "optimizing": False, "show": ()}


def test_the_csv_lists_every_job_with_its_columns_in_order(tmp_path):
    from experiments.reports.cli import build_report

    sweep = fake_sweep(tmp_path)
    with open(build_report(sweep)["csv"]) as f:
        reader = csv.DictReader(f)
        rows, header = list(reader), reader.fieldnames
    assert header[:11] == [
        "job",
        "config",
        "run_name",
        "tags",
        "activation",
        "seed",
        "overrides",
        "status",
        "test/acc",
        "val/acc",
        "test/loss",
    ]
    assert header[-2:] == ["wall_seconds", "error"] and "diag/grad_norm/layer1" in header
    assert [(r["job"][:1], r["config"], r["seed"], r["status"]) for r in rows] == [
        ("0", "activation=relu", "0", "completed"),
        ("1", "activation=relu", "1", "completed"),
        ("2", "activation=elu", "0", "diverged"),
        ("3", "activation=elu", "1", "incomplete"),
        ("4", "activation=tanh", "0", "incomplete"),
    ]
    assert rows[0]["overrides"] == "activation=relu seed=0" and float(rows[1]["test/acc"]) == 0.93
    assert rows[2]["error"] == "diverged at epoch 0, step 5" and rows[0]["diag/grad_norm/layer1"] == "2e-05"


def rewrite(job_dir: Path, **changes) -> None:
    """Change one job's metrics.json the way a different run would have written it."""
    record = json.loads((job_dir / "metrics.json").read_text())
    record.update(changes)
    (job_dir / "metrics.json").write_text(json.dumps(record))


def test_the_markdown_report_reads_exactly_as_documented(tmp_path):
    import yaml

    sweep = fake_sweep(tmp_path / "sweep")
    jobs = sorted(sweep.iterdir())
    for d in jobs:  # a setting every job shares is named once, in the header
        overrides = [
            *yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()),
            "optimizer=sgd",
            "data.val_size=500",
        ]
        (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    fused = {"name": "fused-0", "members": 6, "jobs": [0, 1, 2, 5, 7, 8]}
    rewrite(jobs[0], fused_group=fused, **{"diag/dead_frac/total": 0.25})
    rewrite(jobs[1], fused_group=fused, **{"diag/dead_frac/total": 0.5})
    rewrite(
        jobs[4],
        status="completed",
        fused_group={"name": "fused-3", "members": 2, "jobs": [3, 4]},
        **{"test/acc": 0.95, "val/acc": 0.93, "test/loss": 0.001, "wall_seconds": 3.5},
        history={"epoch_seconds": [0.5, 1.0]},
    )
    md = build_report(sweep)["md"].read_text()
    assert (
        md
        == f"""# Sweep report: {sweep}

5 jobs, 3 completed. Mean ± standard deviation over the seeds that completed; best test accuracy first.

Common to every job: `data.val_size=500 optimizer=sgd`

train s: seconds in the training epochs (start-up, set-up and test left out: the first job of a process is not charged for its imports); summary.csv has each job's whole `wall_seconds` too.

| # | configuration | seeds ok | test/acc | val/acc | test/loss | diag/dead_frac/total | diag/grad_norm/layer1 | train s | status |
|---|---|---|---|---|---|---|---|---|---|
| 1 | `activation=tanh` | 1/1 | 0.9500 | 0.9300 | 0.0010 | - | - | 1.5 | completed |
| 2 | `activation=relu` | 2/2 | 0.9200 ± 0.0141 | 0.9100 ± 0.0141 | 0.2750 ± 0.0354 | 0.375 ± 0.177 | 3.00e-05 ± 1.41e-05 | 2.5 ± 0.7 | completed |
| 3 | `activation=elu` | 0/2 | - | - | - | - | - | - | diverged,incomplete |

Trained together as one stacked model (`hydra/launcher=fused`; a member's train s is its group's): jobs 0-2, 5, 7-8; jobs 3-4.

## Jobs that did not complete

- `2_activation=elu,seed=0`: **diverged** diverged at epoch 0, step 5
- `3_activation=elu,seed=1`: **incomplete**
"""
    )


def test_a_configuration_shows_its_jobs_tags_in_a_column_of_its_own(tmp_path):
    sweep = fake_sweep(tmp_path / "sweep")
    jobs = sorted(sweep.iterdir())
    rewrite(jobs[0], tags=["baseline", "seed0"])
    rewrite(jobs[1], tags=["baseline", 3])  # a record edited by hand: what is no name is left out
    md = build_report(sweep)["md"].read_text().splitlines()
    header = next(line for line in md if line.startswith("| # |"))
    assert header.endswith("| train s | tags | status |")
    assert next(line for line in md if line.startswith("| 1 |")).endswith("| baseline,seed0 | completed |")
    assert next(line for line in md if line.startswith("| 2 |")).endswith("| - | diverged,incomplete |")


def test_the_csv_reads_exactly_as_documented(tmp_path):
    sweep = fake_sweep(tmp_path / "sweep")
    jobs = sorted(sweep.iterdir())
    rewrite(jobs[0], **{"collapse/max_abs_diff": 1e-6, "train/acc": 0.95, "epochs": 2})
    rewrite(jobs[0], run_name="relu first", tags=["baseline", "seed0"])
    text = build_report(sweep)["csv"].read_bytes().decode()
    assert text.splitlines()[0] == (
        "job,config,run_name,tags,activation,seed,overrides,status,test/acc,val/acc,test/loss,test/f1,val/f1,val/loss,"
        "train/loss,train/acc,epochs,collapse/max_abs_diff,diag/grad_norm/layer1,"
        "train_seconds,wall_seconds,error"
    )
    assert (
        text.splitlines()[1] == '"0_activation=relu,seed=0",activation=relu,relu first,"baseline,seed0",relu,0,'
        "activation=relu seed=0,completed,0.91,0.9,0.3,,,,,0.95,2,1e-06,2e-05,2.0,9.0,"
    )
    assert text.count("\r\n") == 6 and "\r\r" not in text  # csv's own line ends, not doubled


def test_a_one_job_sweep_reports_its_settings_and_jobs_come_in_number_order(tmp_path):
    from experiments.reports.table import job_dirs, read_job

    sweep = fake_sweep(tmp_path / "sweep")
    for d in sorted(sweep.iterdir())[1:]:
        import shutil

        shutil.rmtree(d)
    report = build_report(sweep)
    md = report["md"].read_text()
    assert "Common to every job: `activation=relu`" in md and "| 1 | `(all alike)` | 1/1 |" in md
    assert report["csv"].read_text().splitlines()[0].startswith("job,config,run_name,tags,seed,overrides,status,")
    for name in ("10_activation=relu", "2_activation=relu", "notes"):  # notes: a record with no .hydra/ folder
        (sweep / name).mkdir()
        (sweep / name / "metrics.json").write_text(json.dumps({"status": "completed", "overrides": ["seed=4"]}))
    dirs = job_dirs(sweep)
    assert [d.name for d in dirs] == ["0_activation=relu,seed=0", "2_activation=relu", "10_activation=relu", "notes"]
    assert read_job(sweep / "notes")["seed"] == "4"  # the overrides come from the record where Hydra's are gone
    (sweep / "bare").mkdir()
    (sweep / "bare" / "metrics.json").write_text("{}")  # no overrides anywhere, no status
    assert {k: read_job(sweep / "bare")[k] for k in ("seed", "overrides", "_overrides", "status")} == {
        "seed": "",
        "overrides": "",
        "_overrides": {},
        "status": "incomplete",
    }
    (sweep / "bare" / ".hydra").mkdir()
    (sweep / "bare" / ".hydra" / "overrides.yaml").write_text("- data.root=/tmp/a=b\n- seed=3\n")
    assert read_job(sweep / "bare")["_overrides"] == {"data.root": "/tmp/a=b", "seed": "3"}


def test_a_job_missing_a_swept_setting_is_labelled_default_and_a_record_without_status_is_incomplete(tmp_path):
    from experiments.reports.cli import incomplete_summary

    sweep = fake_sweep(tmp_path / "sweep")
    jobs = sorted(sweep.iterdir())
    (jobs[4] / ".hydra" / "overrides.yaml").write_text("- seed=0\n")  # the default activation
    (jobs[4] / "metrics.json").write_text(json.dumps({"test/acc": 0.5, "val/loss": None}))
    rewrite(jobs[1], **{"val/loss": None})  # null in a record is skipped, not a crash
    md = build_report(sweep)["md"].read_text()
    assert "| 3 | `activation=(default)` | 0/1 | - | - | - | - | - | incomplete |" in md
    assert incomplete_summary(sweep) == "3 of 5 jobs did not complete (1 diverged, 2 incomplete)"


def test_an_optuna_report_ranks_and_draws_by_the_optimised_metric(tmp_path, monkeypatch):
    import experiments.reports.plots as plots

    sweep = fake_sweep(tmp_path / "sweep")
    jobs = sorted(sweep.iterdir())
    rewrite(jobs[2], status="completed", **{"test/acc": 0.80, "val/loss": 0.1, "wall_seconds": 1.0})
    for d in jobs[:2]:
        rewrite(d, **{"val/loss": 0.2})
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra_plugins.hydra_optuna_sweeper."
        "optuna_sweeper.OptunaSweeper\noptimized_metric: val/loss\n"
    )
    drawn = []
    bars = plots.accuracy_bars
    monkeypatch.setattr(
        plots, "accuracy_bars", lambda groups, path, rank_by: drawn.append(rank_by) or bars(groups, path, rank_by)
    )
    md = build_report(sweep)["md"].read_text().splitlines()
    assert "ranked by val/loss, the metric the search optimised (test accuracy beside it)" in md[2]
    rows = [line for line in md if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert rows[0].startswith("| 1 | `activation=elu` | 1/2 | 0.1000 | 0.8000 |")  # lowest val/loss first
    assert rows[1].startswith("| 2 | `activation=relu` | 2/2 | 0.2000 | 0.9200 ± 0.0141 |")
    assert drawn == ["val/loss"]


def test_plots_are_drawn_from_the_jobs_histories(tmp_path):
    sweep = fake_sweep(tmp_path / "sweep")
    for i, d in enumerate(sorted(sweep.iterdir())[:2]):
        rewrite(d, history={"val/acc": [0.5, 0.9]}, **{"diag/dead_frac/layer1": 0.1 * i})
        (d / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr={0.01 * (i + 1)}\n- seed=0\n")
    assert {"curves", "dead_vs_lr"} <= set(build_report(sweep))


@pytest.mark.parametrize(
    "value, text",
    [("1e3", "1e+03"), ("2.0", "2"), ("64", "64"), ("0.005873", "0.00587"), ("relu", "relu"), ("1E3", "1e+03")],
)
def test_a_swept_value_is_shown_as_typed_unless_a_rounded_number_is_shorter(value, text):
    from experiments.reports.table import _short

    assert _short(value) == text


@pytest.mark.parametrize("value, text", [(1e-3, "0.0010"), (0.5, "0.5000"), (-2e-4, "-2.00e-04")])
def test_numbers_at_the_notation_boundary(value, text):
    from experiments.reports.table import _number

    assert _number(value) == text


def test_an_optuna_sweep_may_rank_by_training_accuracy_and_a_malformed_multirun_yaml_ranks_by_test_accuracy(tmp_path):
    from experiments.reports.table import sweep_settings

    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: OptunaSweeper\noptimized_metric: train/acc\n"
    )
    assert sweep_settings(tmp_path) == {"rank_by": "train/acc", "optimizing": True, "show": ()}
    (tmp_path / "multirun.yaml").write_text("- a list, not a mapping\n")
    assert sweep_settings(tmp_path) == {"rank_by": "test/acc", "optimizing": False, "show": ()}


def test_a_nan_ranking_metric_sorts_last_whatever_the_input_order():
    jobs = [job(["lr=1"], acc=math.nan), job(["lr=2"], acc=0.90), job(["lr=3"], acc=0.95), job(["lr=4"], acc=0.5)]
    label_configs(jobs)
    assert [g["config"] for g in group_configs(jobs)] == ["lr=3", "lr=2", "lr=4", "lr=1"]


def test_the_report_command_describes_itself(monkeypatch, capsys):
    from experiments.reports.cli import main

    monkeypatch.setattr(sys, "argv", ["report", "--help"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 0 and "\nRebuild the report of a sweep directory.\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    "record, status",
    [
        ("[1, 2]", "incomplete"),  # JSON, but no record
        ('{"status": 5, "test/acc": null}', "incomplete"),  # no status a run writes
        ('{"status": "completed", "test/acc": "high", "wall_seconds": "2", "history": {"val/acc": "x"}}', "completed"),
        ('{"status": "completed", "test/acc": true, "history": [0.5]}', "completed"),
        ('{"status": "completed", "history": {"val/acc": [0.5, null], "epoch_seconds": [1, 2]}}', "completed"),
    ],
)
def test_a_record_edited_by_hand_is_read_without_its_unreadable_values_not_a_crash(tmp_path, record, status):
    from experiments.reports.table import job_dirs, read_job

    sweep = fake_sweep(tmp_path / "sweep")
    first = sorted(sweep.iterdir())[0]
    (first / "metrics.json").write_text(record)
    (sorted(sweep.iterdir())[1] / ".hydra" / "overrides.yaml").write_text("- [unclosed\n")  # broken YAML
    (sorted(sweep.iterdir())[2] / ".hydra" / "overrides.yaml").write_text("seed=0 activation=elu\n")  # no list
    job = read_job(first)
    assert job["status"] == status and "test/acc" not in job and "wall_seconds" not in job
    assert job["history"] == ({"epoch_seconds": [1.0, 2.0]} if "epoch_seconds" in record else {})
    paths = build_report(sweep)  # the table, the CSV and every picture
    assert all(Path(p).is_file() for p in paths.values())
    # the second and third from their records' overrides
    assert [read_job(d)["seed"] for d in job_dirs(sweep)][:3] == ["0", "1", "0"]
    assert read_job(sorted(sweep.iterdir())[2])["overrides"] == "activation=elu seed=0"


# ---------------------------------------------------------------- the report's inputs are read back


@pytest.mark.parametrize("name", ["summary.csv", "summary.md", "test_acc.png"])
def test_a_report_file_replaced_by_a_link_is_replaced_not_written_through(tmp_path, name):
    sweep = fake_sweep(tmp_path / "sweep")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    (sweep / name).symlink_to(outside)
    build_report(sweep)
    assert outside.read_text() == "keep" and not (sweep / name).is_symlink() and (sweep / name).stat().st_size > 0


def test_damaged_records_are_read_as_missing_values_not_as_a_crash(tmp_path):
    """A number past a float, a malformed fused group, a job named with a digit int() cannot read, an lr sweep
    whose job lost its optimizer.lr: the report is made, and says what it could not read as missing."""
    import yaml

    sweep = fake_sweep(tmp_path / "sweep")
    relu0, relu1 = sorted(sweep.glob("[01]_*"))
    rewrite(relu0, **{"test/acc": 10**400, "fused_group": {"jobs": "0-3", "members": 2}})
    rewrite(relu1, fused_group=[1, {"jobs": None}])
    (sweep / "²_activation=gelu").mkdir()
    (sweep / "²_activation=gelu" / "metrics.json").write_text(json.dumps({"status": "completed", "test/acc": 0.5}))
    for n, lr in enumerate(["0.1", "0.01"]):
        (relu0 if n == 0 else relu1).joinpath(".hydra", "overrides.yaml").write_text(
            yaml.safe_dump(["activation=relu", f"seed={n}", *([f"optimizer.lr={lr}"] if n else [])])
        )
    paths = build_report(sweep)
    rows = {r["job"]: r for r in csv.DictReader((sweep / "summary.csv").read_text().splitlines())}
    assert rows[relu0.name]["test/acc"] == "" and rows[relu1.name]["test/acc"] == "0.93"
    assert list(rows)[-1] == "²_activation=gelu"  # after the numbered jobs: ² is no job number
    assert "Trained together" not in paths["md"].read_text()


def test_thousands_of_planted_layers_are_bounded(tmp_path):
    from experiments.reports.style import MAX_LAYERS, layers_in
    from experiments.reports.table import job_dirs, read_job

    sweep = fake_sweep(tmp_path / "sweep")
    relu0 = sorted(sweep.glob("0_*"))[0]
    planted = {f"diag/grad_norm/layer{n}": 1e-3 for n in range(20_000)}
    rewrite(relu0, **planted, history={k: [v, v] for k, v in planted.items()})
    jobs = [read_job(d) for d in job_dirs(sweep)]
    assert len(layers_in(jobs, "diag/grad_norm/")) == MAX_LAYERS
    build_report(sweep)
    assert (sweep / "grad_norms.png").stat().st_size > 0


def test_the_csv_keeps_the_record_s_columns_and_quotes_what_a_spreadsheet_would_run(tmp_path):
    import yaml

    sweep = fake_sweep(tmp_path / "sweep")
    running = sorted(sweep.glob("4_*"))[0]  # its record says running: incomplete in the report
    planted = ["activation=tanh", "seed=0", "+status=completed", "+job=0_x", "+run_name=x"]
    (running / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(planted))
    relu0 = sorted(sweep.glob("0_*"))[0]
    rewrite(relu0, run_name='=HYPERLINK("http://x","y")', tags=["@SUM(1)", "-2+3", "ok"], error="-0.5")
    build_report(sweep)
    rows = {r["job"]: r for r in csv.DictReader((sweep / "summary.csv").read_text().splitlines())}
    assert rows[running.name]["status"] == "incomplete" and rows[running.name]["job"] == running.name
    assert rows[relu0.name]["run_name"] == '\'=HYPERLINK("http://x","y")'
    assert rows[relu0.name]["tags"] == "'@SUM(1),-2+3,ok" and rows[relu0.name]["error"] == "-0.5"


def test_a_sweep_whose_report_cannot_be_made_exits_with_the_line_that_says_why(tmp_path, capsys):
    from omegaconf import OmegaConf

    from experiments.reports.cli import SweepReport

    (tmp_path / "sweep").mkdir()
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    with pytest.raises(SystemExit) as exited:
        SweepReport().on_multirun_end(config)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("Error: no sweep report: ") and "has no job directories" in err


def test_a_sweep_s_config_names_what_its_summary_shows_beside_test_accuracy(tmp_path):
    """``show: [...]`` (a preset's evidence: collapse/test_acc, the dead fraction) gets columns in summary.md;
    read back, only names a record holds count."""
    import yaml

    sweep = fake_sweep(tmp_path / "sweep")
    relu0, relu1 = sorted(sweep.glob("[01]_*"))
    rewrite(relu0, **{"collapse/test_acc": 0.8, "train/loss": 0.25})
    rewrite(relu1, **{"collapse/test_acc": 0.9, "train/loss": 0.35})
    show = ["collapse/test_acc", "train/loss", "${oc.env:HOME}", {"_target_": "os.mkdir"}, "not/a_metric"]
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"show": show, "hydra": {"sweeper": {}}}))
    build_report(sweep)
    md = (sweep / "summary.md").read_text()
    head = next(line for line in md.splitlines() if line.startswith("| # |"))
    assert "| test/loss | collapse/test_acc | train/loss |" in head and "not/a_metric" not in md
    row = next(line for line in md.splitlines() if "relu" in line and line.startswith("| 1 |"))
    assert "| 0.8500 ± 0.0707 | 0.3000 ± 0.0707 |" in row


def test_each_bar_carries_its_own_configuration_s_spread(tmp_path):
    import experiments.reports.plots as plots

    groups = [  # ranked best first, as group_configs gives them; spreads all different
        {"config": "activation=elu", "test/acc": (0.95, 0.004)},
        {"config": "activation=relu", "test/acc": (0.9, 0.03)},
        {"config": "activation=sigmoid", "test/acc": (0.6, 0.12)},
    ]
    ax = drawn_alone(plots.accuracy_bars, groups, tmp_path).axes[0]
    (bars,) = [c for c in ax.containers if hasattr(c, "errorbar")]
    (spans,) = bars.errorbar.lines[2]  # one horizontal segment per bar
    labels = [t.get_text() for t in ax.get_yticklabels()]
    for bar, (start, end), label in zip(bars.patches, spans.get_segments(), labels):
        mean, std = next(g["test/acc"] for g in groups if g["config"] == label)
        assert bar.get_width() == pytest.approx(mean) and start[1] == end[1] == pytest.approx(bar.get_y() + 0.4)
        assert (start[0], end[0]) == pytest.approx((mean - std, mean + std)), label


def test_the_spread_legend_names_a_configuration_that_diverged_before_its_end(tmp_path):
    import experiments.reports.layer_plots as layer_plots

    jobs = [history_job(a, "0.01", 0, [0.1, 0.1], [0.1, 0.1]) for a in ("relu", "elu")]
    jobs[1]["history"]["diag/act_std/layer1"][-1] = math.nan  # its last reading: the weights had diverged
    jobs[1]["history"]["diag/act_std/layer2"][-1] = math.nan
    label_configs(jobs)
    at_start, at_end = drawn_alone(layer_plots.activation_spread, group_configs(jobs), tmp_path).axes
    assert len(at_start.lines) == 2 and len(at_end.lines) == 1
    named = [text.get_text() for text in at_end.get_legend().get_texts()]
    assert len(named) == 2 and any("elu" in n for n in named), named


def test_a_deep_networks_activations_are_drawn_as_means_alone_its_spread_left_to_the_spread_picture(tmp_path):
    import experiments.reports.layer_plots as layer_plots

    for depth, banded in ((layer_plots.BANDS_UP_TO, True), (layer_plots.BANDS_UP_TO + 1, False)):
        jobs = [history_job("relu", "0.01", 0, [0.1] * depth, [0.1] * depth)]
        label_configs(jobs)
        figure = drawn_alone(layer_plots.activations, group_configs(jobs), tmp_path)
        ax = figure.axes[0]
        assert len(ax.lines) == depth and (len(ax.collections) == depth) is banded, depth
        assert (ax.get_ylabel() == "activation: mean ± std") is banded
