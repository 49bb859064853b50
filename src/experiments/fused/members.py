"""A fused group's training: the members built as their own runs build them, trained as one stacked model,
each one's record written by the run's own writer. What each member's run sees: ``member_runs.py``; which
jobs may fuse: ``grouping.py``.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from omegaconf import DictConfig, OmegaConf

from experiments.errors import INTERRUPTED, ExperimentError, say
from experiments.fused.data import MembersData
from experiments.fused.member_runs import Member, MemberRuns
from experiments.fused.stacked import FusedClassifier
from experiments.lit.callbacks import Interrupts
from experiments.lit.classifier import Classifier
from experiments.lit.metrics import compute
from experiments.lit.pruning import TrialPruning, search_trial
from experiments.names import Status
from experiments.run.checkpoints import read_checkpoint
from experiments.run.cli import check_config, finish, quiet_lightning, user_error
from experiments.run.hparams import labels, log_final, plain
from experiments.run.outcome import history_of, how_it_ran, latest_of, trained
from experiments.run.recipe import (
    best_checkpoint,
    build_entries,
    build_loggers,
    build_module,
    build_trainer,
    set_threads,
)
from experiments.run.record import Record, first_record, record_failure
from experiments.run_dir import finish_command

log = logging.getLogger(__name__)


def build_members(members: list[Member]) -> tuple[MembersData, list[Classifier]]:
    """The shared data and each member's classifier, seeded as its own run seeds it."""
    first = members[0].cfg
    settings = {k: v for k, v in plain(first.data).items() if k not in ("_target_", "shuffle_seed")}
    data = MembersData([int(m.cfg.data.shuffle_seed) for m in members], **settings)
    data.prepare_data()
    classifiers = []
    for member in members:
        L.seed_everything(member.cfg.seed, workers=True, verbose=False)
        classifiers.append(build_module(member.cfg, data))
    return data, classifiers


def order_members(members: list[Member]) -> tuple[list[Member], list[range]]:
    """Members sorted so that equal optimizer settings are consecutive (one parameter group each),
    and within them equal activations (one call each)."""

    def key(m: Member) -> tuple[str, str]:
        return (json.dumps(plain(m.cfg.optimizer), sort_keys=True), json.dumps(plain(m.cfg.activation), sort_keys=True))

    ordered = sorted(members, key=key)
    groups: list[range] = []
    for i, member in enumerate(ordered):
        if groups and key(ordered[groups[-1].start])[0] == key(member)[0]:
            groups[-1] = range(groups[-1].start, i + 1)
        else:
            groups.append(range(i, i + 1))
    return ordered, groups


def train_members(members: list[Member], group_name: str) -> dict[int, dict[str, Any]]:
    """Train the members as one stacked model and write each one's run directory; returns each
    member's ``metrics.json`` by job number. A Ctrl-C or SIGTERM ends the process as a run's does."""
    members, opt_groups = order_members(members)
    cfg = members[0].cfg
    group = {"name": group_name, "members": len(members), "jobs": [m.job for m in members]}
    for member in members:
        data = {
            **first_record(member.run_dir, member.choices, member.overrides, labels(member.cfg)),
            "fused_group": group,
        }
        member.record = Record(member.run_dir / "metrics.json", data)
        member.record.update()
    set_threads(cfg.threads, 1)
    torch.use_deterministic_algorithms(bool(cfg.deterministic))
    data, classifiers = build_members(members)
    module = FusedClassifier(classifiers, opt_groups)
    for member in members:  # the parts of a separate run, built by the recipe's own builders
        member.loggers = build_loggers(member.cfg)
        member.monitors = build_entries(member.cfg, "diagnostics")
        member.checkpoints = [c for c in build_entries(member.cfg, "callbacks") if isinstance(c, ModelCheckpoint)]
        if member.trial is not None:
            member.pruning = TrialPruning(member.trial, member.cfg.optimized_metric)
    runs = MemberRuns(members, group)
    bars = [c for c in build_entries(cfg, "callbacks") if isinstance(c, ProgressBar)]
    interrupts = Interrupts(None, runs.interrupted)
    trainer = build_trainer(cfg, [runs, interrupts, *bars], [], members[0].run_dir)
    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=data)
        for k, member in enumerate(members):  # the test is of each member's best epoch
            if best := best_checkpoint(member.checkpoints)["best_ckpt"]:
                module.member(k).load_state_dict(read_checkpoint(best)["state_dict"])
        trainer.test(module, datamodule=data, verbose=False)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C or SIGTERM: exit as a process they end does
        why = interrupts.stopped_outside_training()
        for member in members:  # those runs.interrupted did not reach: diverged, or stopped where none saves
            if member.record.data["status"] == Status.RUNNING:
                history = history_of(member.history, member.monitors)
                stopped = {"status": Status.INTERRUPTED, "error": why}
                member.record.update(**(member.outcome or {**stopped, "history": history}))
        if not interrupts.began:  # in fit's set-up: the launcher names the way on, as while it prepared jobs
            raise KeyboardInterrupt from None
        raise SystemExit(interrupts.exit_status(exc)) from None
    losses = module.epoch_means("test")[0]
    test = [{"test/loss": loss, **compute("test", module.member(k).measures["test"])} for k, loss in enumerate(losses)]
    seconds = round(time.perf_counter() - started, 3)
    results = {}
    for k, member in enumerate(members):
        outcome = member.outcome or trained(history_of(member.history, member.monitors))
        if outcome["status"] == Status.TRAINED:
            tested = test[k]
            for logger in member.loggers:
                logger.log_metrics(tested, step=trainer.global_step)
            outcome.update(tested, status=Status.COMPLETED, **best_checkpoint(member.checkpoints))
        outcome.update(latest_of(member.monitors))
        result = member.record.update(**outcome, **how_it_ran(trainer), group_seconds=seconds)
        if result["status"] == Status.COMPLETED:
            log_final(member.loggers, trainer.global_step, member.cfg, member.choices, result, member.overrides)
        results[member.job] = result
    return results


def prepare_member(cfg: DictConfig) -> Any:
    """A fused launcher's job before it trains with others: ``train_main``'s checks, and the job's
    config resolved while its Hydra context is set. A job that fails them is recorded ``failed``."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = OmegaConf.to_container(hc.overrides.task, resolve=False)
    quiet_lightning()
    try:
        check_config(cfg, hc, multirun=True)
    except ExperimentError as exc:
        return user_error(exc, run_dir, overrides, multirun=True)
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    return Member(
        job=int(hc.job.num),
        cfg=resolved,
        run_dir=run_dir,
        choices=dict(hc.runtime.choices),
        overrides=overrides,
        trial=search_trial(hc),  # opened while the job's environment (its trial's number) is set
    )


def stopped_before_training(sweep_dir: Path) -> NoReturn:
    """A Ctrl-C while the launcher prepared jobs, before their group trained: one line with the way on, and
    the status a shell expects (jobs not trained have no record, or one of an interruption before training
    began: ``finish=`` runs them)."""
    say(
        "Interrupted (Ctrl-C) while the fused launcher prepared jobs, before their group trained; finish the "
        f"sweep (these jobs run again) with:\n  {finish_command(sweep_dir.resolve())}"
    )
    raise SystemExit(INTERRUPTED)


def train_group(group: list[Member], name: str) -> dict[int, float]:
    """Train one fused group; each member's ``optimized_metric`` for the sweeper, by job (NaN where the
    member did not complete). A crash is a bug: every member records it, and the sweep goes on."""
    try:
        results = train_members(group, name)
    except Exception as exc:
        for member in group:
            record_failure(member.run_dir, f"{type(exc).__name__}: {exc}", member.overrides)
        log.error("%s crashed:\n%s", name, traceback.format_exc())
        return {member.job: math.nan for member in group}
    return {member.job: finish(member.cfg, results[member.job], member.run_dir) for member in group}
