"""``config/search.py`` and the sweeper that runs it (``hydra/sweeper=optuna``): what a search asks, launches and
tells, checked against Optuna's own loop; its refusals; a job's trial and its pruning."""

import math
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf, open_dict
from optuna.trial import TrialState

from conftest import CONF, read_metrics, run_process, run_script
from experiments.config.search import job_trial, plan_search
from experiments.errors import ExperimentError
from experiments.read_back import write_json
from experiments.sweep_dir import TRIAL_ENV, write_code


def search_config(tmp_path: Path, overrides: list[str] = ()):
    """``hparams_search=lr_width``'s composed config, Hydra's part included, sweeping into ``tmp_path/sweep``."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=["hparams_search=lr_width", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(tmp_path / "sweep")
    return cfg


def objective(params: dict) -> float:
    """A stand-in for training: a smooth function of the searched values."""
    return -((math.log10(params["optimizer.lr"]) + 2.5) ** 2) + params["search.width"] / 1000 - params["search.depth"]


class StubLauncher:
    """Launches a batch as a launcher does, without training: each job's record says ``status``, and its return
    value is ``objective`` of its drawn values; remembers each call's batch and first job number."""

    def __init__(self, sweep_dir: Path, status=lambda params: "completed") -> None:
        self.sweep_dir, self.status, self.calls = sweep_dir, status, []

    def launch(self, job_overrides, initial_job_idx):
        self.calls.append(([list(o) for o in job_overrides], initial_job_idx))
        returns = []
        for num, overrides in enumerate(job_overrides, initial_job_idx):
            values = dict(o.split("=", 1) for o in overrides if not o.startswith(("+", "hparams_search")))
            params = {k: (int(v) if k.startswith("search.") else float(v)) for k, v in values.items()}
            job_dir = self.sweep_dir / str(num)
            job_dir.mkdir(parents=True)
            write_json(job_dir / "metrics.json", {"status": self.status(params)})
            hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(job_dir)}}})
            returns.append(JobReturn(hydra_cfg=hydra_cfg, status=JobStatus.COMPLETED, _return_value=objective(params)))
        return returns


def sweeper_for(cfg, launcher):
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

    sweeper = OptunaSweeper(**OmegaConf.to_container(cfg.hydra.sweeper))
    sweeper.config, sweeper.launcher = cfg, launcher
    return sweeper


def test_the_sweepers_trials_are_optunas_own_for_the_same_seed(tmp_path):
    """A peer check: the sweeper's ask-and-tell, in batches, draws the parameters Optuna's own ``optimize`` draws
    over the same space with the same seed, through TPE's random start-up and past it."""
    cfg = search_config(tmp_path, ["hydra.sweeper.n_trials=13", "hydra.sweeper.n_jobs=1"])
    sweep_dir = Path(cfg.hydra.sweep.dir)
    launcher = StubLauncher(sweep_dir)
    sweeper_for(cfg, launcher).sweep([])
    ours = optuna.load_study(study_name="lr_width", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")

    def suggested(trial):
        params = {
            "optimizer.lr": trial.suggest_float("optimizer.lr", 0.0003, 0.03, log=True),
            "search.width": trial.suggest_categorical("search.width", [32, 64, 128]),
            "search.depth": trial.suggest_int("search.depth", 1, 4),
        }
        return objective(params)

    peer = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    peer.optimize(suggested, n_trials=13)
    assert [t.params for t in ours.trials] == [t.params for t in peer.trials]
    assert [t.value for t in ours.trials] == [t.value for t in peer.trials]
    # each trial a job of its own number; the drawn values and the trial's number on its command line
    assert [first for _, first in launcher.calls] == list(range(13))
    (job,), _ = launcher.calls[4]
    assert f"optimizer.lr={ours.trials[4].params['optimizer.lr']}" in job
    assert f"+hydra.job.env_set.{TRIAL_ENV}=4" in job
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert results.best_value == peer.best_value and results.best_params == peer.best_params


def test_trials_are_asked_n_jobs_at_a_time_and_launched_together(tmp_path):
    cfg = search_config(tmp_path, ["hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=2"])
    launcher = StubLauncher(Path(cfg.hydra.sweep.dir))
    sweeper_for(cfg, launcher).sweep(["trainer.max_epochs=3"])
    assert [(len(batch), first) for batch, first in launcher.calls] == [(2, 0), (2, 2), (1, 4)]
    assert all("trainer.max_epochs=3" in job for batch, _ in launcher.calls for job in batch)  # fixed: every job


def test_each_job_is_told_as_its_record_says(tmp_path):
    """completed: its value; pruned: pruned; diverged, failed or a record that says nothing: failed."""
    statuses = iter(["completed", "pruned", "diverged", "failed", "running"])
    cfg = search_config(
        tmp_path, ["hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=5", "hydra.sweeper.max_failure_rate=1"]
    )
    sweep_dir = Path(cfg.hydra.sweep.dir)
    sweeper_for(cfg, StubLauncher(sweep_dir, status=lambda params: next(statuses))).sweep([])
    study = optuna.load_study(study_name="lr_width", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL, TrialState.FAIL]
    assert study.trials[0].value == pytest.approx(objective(study.trials[0].params))


def test_no_more_trials_are_asked_once_the_failures_pass_their_share(tmp_path):
    cfg = search_config(tmp_path, ["hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2"])  # rate 0: none may fail
    launcher = StubLauncher(Path(cfg.hydra.sweep.dir), status=lambda params: "failed")
    sweeper_for(cfg, launcher).sweep([])
    assert len(launcher.calls) == 1


def test_a_search_finished_in_place_draws_on_and_settles_what_a_kill_left_running(tmp_path):
    """The study continues: trials a kill left running are told from their jobs' records (a completed job's value)
    or asked again (a job with no finished record, its directory moved aside); the seeded sampler draws on from
    where it was, not its first trials again."""
    cfg = search_config(tmp_path, ["hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1"])
    sweep_dir = Path(cfg.hydra.sweep.dir)
    sweeper_for(cfg, StubLauncher(sweep_dir)).sweep([])
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
    study = optuna.load_study(study_name="lr_width", storage=storage)
    plan = plan_search(cfg, [], sweep_dir)
    left = [study.ask(plan.distributions) for _ in range(2)]  # as a kill leaves them: asked, never told
    (sweep_dir / f"{left[0].number}_killed").mkdir()  # its job had begun, no record yet
    done = sweep_dir / f"{left[1].number}_ended"  # its job ended, the kill came before the tell
    done.mkdir()
    write_json(done / "metrics.json", {"status": "completed", "val/acc": 0.77})
    with open_dict(cfg):
        cfg.hydra.sweeper.n_trials, cfg.hydra.sweeper.finishing = 6, True
    write_code(sweep_dir)  # as train.py records it when a sweep begins: finishing checks the code is the same
    launcher = StubLauncher(sweep_dir)
    sweeper_for(cfg, launcher).sweep([])
    trials = optuna.load_study(study_name="lr_width", storage=storage).trials
    assert trials[left[1].number].value == 0.77 and trials[left[0].number].user_attrs == {"lost": True}
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 6  # the lost one not counted
    again = trials[launcher.calls[0][1]]  # the first trial the finishing launched: the lost one, asked again
    assert again.params == left[0].params and not (sweep_dir / f"{left[0].number}_killed").exists()
    assert len(list(sweep_dir.glob(f"earlier-*/{left[0].number}_killed"))) == 1
    drawn = [tuple(sorted(t.params.items())) for t in trials if not t.user_attrs and t.number != again.number]
    assert len(set(drawn)) == len(drawn) == 5  # 0-2, the one whose job ended, one new: no draw repeated


@pytest.mark.parametrize(
    "overrides, says",
    [
        (["hydra.sweeper.pruner=medium"], "hydra.sweeper.pruner='medium' is unknown: one of none, median"),
        (["hydra.sweeper.params={optimizer.lr:'interval(0.1,'}"], "the search space's 'optimizer.lr=interval(0.1,'"),
        (["hydra.sweeper.direction=maximise"], "hydra.sweeper.direction='maximise': minimize or maximize"),
        (["hydra/sweeper/sampler=grid"], "the grid sampler needs its values listed"),
        (["+hydra.sweeper.sampler.nonsense=1"], "hydra.sweeper.sampler (optuna.samplers.TPESampler) cannot be built"),
        (["hydra.sweeper.search_space={x:1}"], "hydra.sweeper.search_space is hydra-optuna-sweeper's older form"),
    ],
)
def test_a_search_that_cannot_work_is_refused_in_one_line(tmp_path, overrides, says):
    cfg = search_config(tmp_path, overrides)
    with pytest.raises(ExperimentError) as caught:
        plan_search(cfg, [], Path(cfg.hydra.sweep.dir))
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_searched_key_the_config_does_not_have_is_refused_and_a_new_one_with_plus_is_not(tmp_path):
    cfg = search_config(tmp_path)
    with open_dict(cfg):
        cfg.hydra.sweeper.params["optimizer.lrr"] = "interval(0.1, 0.2)"
    with pytest.raises(ExperimentError, match=r"^the search's parameter 'optimizer.lrr' is no key of the config: "):
        plan_search(cfg, [], Path(cfg.hydra.sweep.dir))
    fresh = search_config(tmp_path)
    assert "+note" in plan_search(fresh, ["+note=a,b"], Path(fresh.hydra.sweep.dir)).distributions


def test_a_storage_that_cannot_be_opened_or_a_study_of_the_other_direction_is_refused(tmp_path):
    cfg = search_config(tmp_path, ["hydra.sweeper.storage=sqlite:////nonexistent/dir/o.db"])
    with pytest.raises(ExperimentError, match=r"hydra.sweeper.storage='sqlite:////nonexistent/dir/o.db' cannot be"):
        plan_search(cfg, [], Path(cfg.hydra.sweep.dir)).check_storage()
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(storage=url, study_name="lr_width", direction="minimize")
    cfg = search_config(tmp_path, [f"hydra.sweeper.storage='{url}'"])
    with pytest.raises(ExperimentError, match=r"study 'lr_width' in .* already optimises minimize, not maximize"):
        plan_search(cfg, [], Path(cfg.hydra.sweep.dir)).check_storage()


def test_refused_through_train_py_before_anything_is_written(tmp_path):
    proc = run_script(["hparams_search=lr_width", "hydra.sweeper.pruner=medium", "hydra.sweep.dir=sweep"], tmp_path)
    assert proc.returncode == 2 and "Error: hydra.sweeper.pruner='medium' is unknown" in proc.stderr
    assert not (tmp_path / "sweep").exists()


def test_a_job_opens_its_own_trial_from_the_study_and_a_job_outside_a_search_none(tmp_path, monkeypatch):
    cfg = search_config(tmp_path, ["hydra.sweeper.pruner=median"])
    plan = plan_search(cfg, [], Path(cfg.hydra.sweep.dir))
    Path(cfg.hydra.sweep.dir).mkdir()
    study = plan.open_study()
    asked = [study.ask(plan.distributions) for _ in range(3)]
    monkeypatch.setenv(TRIAL_ENV, "1")
    trial = job_trial(cfg.hydra)
    assert trial.number == 1 and trial.params == asked[1].params
    assert isinstance(trial.study.pruner, optuna.pruners.MedianPruner)
    trial.report(0.5, step=0)
    assert study.trials[1].intermediate_values == {0: 0.5}
    monkeypatch.delenv(TRIAL_ENV)
    assert job_trial(cfg.hydra) is None


# Two trials of one shape, a good learning rate and an absurd one (grid order by seed 1), three short epochs; a
# pruner that stops any trial below 0.5 validation accuracy
PLANTED = [
    "hparams_search=lr_width",
    "hydra.sweeper.params={optimizer.lr:'choice(0.003, 5.0)'}",
    "search.width=32",
    "search.depth=1",
    "hydra/sweeper/sampler=grid",
    "hydra.sweeper.sampler.seed=1",
    "hydra.sweeper.n_trials=2",
    "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.5}",
    "data.limit_train=2048",
    "trainer.max_epochs=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "diagnostics=none",
    "callbacks.progress_bar=null",
    "print_config=false",
]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib", "ray"])
def test_a_planted_bad_trial_is_pruned_after_its_first_validation(tmp_path, launcher):
    """An absurd learning rate (5.0) against a good one, through train.py: the pruner stops the bad trial after its
    first epoch, its record says pruned, the study too, and the report lists it apart; each job opens its own
    trial from the study, wherever its launcher runs it (Ray: in the cluster the sweep starts, a process of its own)."""
    run = run_process if launcher == "ray" else run_script
    proc = run([*PLANTED, f"hydra/launcher={launcher}", "hydra.sweeper.n_jobs=1", "hydra.sweep.dir=sweep"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]  # a pruned trial is the search's verdict, no failure
    sweep = tmp_path / "sweep"
    records = {read_metrics(p.parent)["overrides"][-1]: read_metrics(p.parent) for p in sweep.glob("*/metrics.json")}
    bad, good = records["optimizer.lr=5.0"], records["optimizer.lr=0.003"]
    assert bad["status"] == "pruned" and bad["pruned_after_epoch"] == 1 and len(bad["history"]["val/acc"]) == 1
    assert "test/acc" not in bad and good["status"] == "completed" and good["epochs"] == 3
    study = optuna.load_study(study_name="lr_width", storage=f"sqlite:///{sweep / 'optuna.db'}")
    states = {t.params["optimizer.lr"]: t.state for t in study.trials}
    assert states == {5.0: TrialState.PRUNED, 0.003: TrialState.COMPLETE}
    summary = (sweep / "summary.md").read_text()
    assert "## Trials the search pruned" in summary and "pruned after epoch 1" in summary
    assert "did not complete" not in summary


SEARCH = [  # four trials of one epoch on a slice of the data, two at a time
    "hparams_search=lr_width",
    "hydra.sweeper.n_trials=4",
    "hydra.sweeper.n_jobs=2",
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
    "data.limit_train=4096",
    "trainer.max_epochs=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "diagnostics=none",
    "callbacks.progress_bar=null",
    "print_config=false",
]


@pytest.mark.slow
def test_a_search_killed_mid_trial_goes_on_to_its_trials_with_finish_none_lost_or_twice(tmp_path):
    """kill -9 of the whole search while its first trials train, then ``train.py finish=<sweep dir>``: the
    study continues in its database, the trials left running are asked again with their own parameters, and
    the search ends with n_trials finished trials, each a completed job of the report."""
    import os
    import signal
    import subprocess
    import time

    from conftest import start_script

    sweep = tmp_path / "sweep"
    proc = start_script(
        [*SEARCH, f"hydra.sweep.dir={sweep}"], tmp_path, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while not list(sweep.glob("*/metrics.json")) and proc.poll() is None:  # the first trials have begun
            assert time.monotonic() < deadline, "no trial started"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    before = optuna.load_study(study_name="lr_width", storage=storage).trials
    running = [t for t in before if t.state == TrialState.RUNNING]
    assert running, "the kill came after every trial had finished"
    done = run_script([f"finish={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="lr_width", storage=storage).trials
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    lost = [t for t in trials if t.user_attrs.get("lost")]
    assert len(finished) == 4 and len(trials) == 4 + len(lost)  # nothing asked twice but the lost ones
    assert sorted(t.number for t in lost) == sorted(
        t.number for t in running if t.number not in {f.number for f in finished}
    )
    for trial in lost:  # asked again with its own parameters
        assert any(t.params == trial.params for t in finished), trial.number
    jobs = sorted(p.name.split("_")[0] for p in sweep.glob("[0-9]*_*"))
    assert jobs == sorted(str(t.number) for t in finished)  # each finished trial a job; the lost ones moved aside
    assert all(read_metrics(p)["status"] == "completed" for p in sweep.glob("[0-9]*_*"))
    assert "4 jobs, 4 completed" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_a_pruned_member_of_a_fused_batch_stops_and_the_others_equal_their_separate_runs(tmp_path):
    """Two trials of one shape trained as one stacked model: the absurd learning rate's member is pruned after its
    first epoch while the other trains on, and ends where its run under the basic launcher ends."""
    search = [*PLANTED, "hydra.sweeper.n_jobs=2", "deterministic=true"]
    runs = {}
    for launcher in ("fused", "basic"):
        proc = run_script([*search, f"hydra/launcher={launcher}", f"hydra.sweep.dir={launcher}"], tmp_path)
        assert proc.returncode == 0, (launcher, proc.stderr[-3000:])
        sweep = tmp_path / launcher
        runs[launcher] = {
            read_metrics(p.parent)["overrides"][-1]: read_metrics(p.parent) for p in sweep.glob("*/metrics.json")
        }
    fused, basic = runs["fused"], runs["basic"]
    assert fused["optimizer.lr=0.003"]["fused_group"]["members"] == 2  # trained together
    for run in (fused, basic):
        bad = run["optimizer.lr=5.0"]
        assert bad["status"] == "pruned" and bad["pruned_after_epoch"] == 1 and len(bad["history"]["val/acc"]) == 1
    good, alone = fused["optimizer.lr=0.003"], basic["optimizer.lr=0.003"]
    assert good["status"] == alone["status"] == "completed" and good["epochs"] == alone["epochs"] == 3
    assert good["history"]["val/acc"] == pytest.approx(alone["history"]["val/acc"], abs=0.002)
    assert good["test/acc"] == pytest.approx(alone["test/acc"], abs=0.002)
