"""How close is the framework to a plain PyTorch loop? Per epoch, per process, in memory, per sweep.

In one process and one run, it trains the course's MLP with the framework (``experiments.run.recipe.run``,
defaults: rich progress bar, TensorBoard logging, diagnostics, checkpoints) and with the plain loop
of ``scripts/plain_mnist.py`` on the same data, model, batch and device, and prints the median
steady-state epoch (the first epoch is warm-up) of each and their ratio. Then, optionally:

- ``--ablation``: the framework also with ``diagnostics=none``, then also ``callbacks=none``, then also
  ``logger=none``: what each default part costs an epoch;
- ``--whole``: wall time and peak memory of ``python train.py`` (defaults) against
  ``python scripts/plain_mnist.py`` doing the same work, each run ``--repeats`` times, alternating;
- ``--sweep``: a sweep (``--sweep-jobs`` 12: 4 activations x 3 Adam learning rates; 36: x 3 seeds; 48:
  4 x 4 x 3; 2 epochs each) under Hydra's basic launcher and under ``hydra/launcher=fused`` (and joblib
  with ``--n-jobs``), alternating ``--repeats`` times, beside one job of it alone;
- ``--stacked-step``: the arithmetic alone: one training step of the ``--sweep-jobs`` sweep's members stacked
  as the fused launcher trains them, against the same members stepped one after another as separate models;
- ``--diagnostics-cost``: the time spent inside the diagnostics callbacks, as a share of the epochs;
- ``--sync-debug`` (CUDA): every host synchronisation of a framework run, by source line.

Beside the plain loop and the framework it times a bare Lightning ``Trainer`` (automatic optimization,
no logger, callbacks or progress bar) over the same preloaded batches: what Lightning itself costs,
so that what the project adds on top of it shows on its own.

    python scripts/benchmark.py                      # CPU or the GPU, batch 256, 6 epochs
    python scripts/benchmark.py --batch-size full    # full-batch gradient descent (optimizer=gd)
    python scripts/benchmark.py --device cuda --compile --whole --sweep
    python scripts/benchmark.py --sweep --sweep-jobs 36 --repeats 2 --rounds 1 --epochs 2
    python scripts/benchmark.py --rounds 0 --stacked-step --sweep-jobs 36 --repeats 3
    python scripts/benchmark.py --ablation --whole --sweep --stacked-step --markdown docs/performance.md

Results are printed as tables and written to ``outputs/benchmark/<time>/benchmark.json``; ``--markdown``
also writes the tables as a page, with the date, the commit, the machine and the command that made them.
Uses only the standard library, PyTorch and the project; not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import plain_mnist  # noqa: E402


def framework_epochs(device: str, epochs: int, batch: str, compile_: bool | str, extra: list[str]) -> dict:
    """The framework as users run it, in this process; per-epoch seconds from its metrics.json."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from experiments.run.recipe import run
    from experiments.run.resolvers import register_resolvers

    register_resolvers()
    overrides = [
        f"trainer.max_epochs={epochs}",
        f"trainer.accelerator={'gpu' if device.startswith('cuda') else 'cpu'}",
        f"compile={str(compile_).lower() if isinstance(compile_, bool) else compile_}",
        *extra,
    ]
    overrides += ["optimizer=gd"] if batch == "full" else [f"data.batch_size={batch}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.hydra.runtime.output_dir = str(Path(tmp) / "run")  # where the callbacks and loggers write
        HydraConfig.instance().set_config(cfg)
        choices = dict(cfg.hydra.runtime.choices)
        result = run(cfg, Path(tmp) / "run", choices, overrides)
    return {"epoch_seconds": result["history"]["epoch_seconds"], "test_acc": result["test/acc"]}


def bare_lightning_epochs(device: str, epochs: int, batch: str) -> dict:
    """A bare Lightning ``Trainer`` over the project's preloaded batches: the course's MLP, Adam, a validation
    pass per epoch, and nothing else (no logger, callbacks, progress bar or metrics objects)."""
    import lightning as L

    from experiments.data.datamodule import MNISTDataModule

    class Bare(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.loss_fn, self.correct = plain_mnist.build_mlp(), torch.nn.CrossEntropyLoss(), []

        def training_step(self, batch, batch_idx):
            x, y = batch
            return self.loss_fn(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.correct.append((self.net(x).argmax(1) == y).sum())

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.003)

    class EpochTimer(L.Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self.start)

    L.seed_everything(42, verbose=False)
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator="gpu" if device.startswith("cuda") else "cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(Bare(), datamodule=MNISTDataModule(batch_size=batch, shuffle_seed=42))
    return {"epoch_seconds": timer.seconds, "test_acc": float("nan")}


# A small launcher measures the child: a child forked straight from this (large) process would report
# this process's memory as its own peak.
_LAUNCHER = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode; "
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def max_rss_mib(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of one process, from the kernel's accounting."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], cwd=cwd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    code, rss_kib = map(int, out.stdout.split())
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with status {code}")
    return wall, rss_kib / 1024


def whole_process(device: str, repeats: int) -> dict:
    accel = "gpu" if device.startswith("cuda") else "cpu"
    framework = [sys.executable, str(ROOT / "train.py"), "print_config=false", f"trainer.accelerator={accel}"]
    plain = [sys.executable, str(ROOT / "scripts" / "plain_mnist.py"), "--device", device]
    runs: dict[str, list[tuple[float, float]]] = {"framework": [], "plain": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):  # alternating, so drift in machine speed hits both alike
            runs["framework"].append(max_rss_mib(framework, Path(tmp)))
            runs["plain"].append(max_rss_mib(plain, Path(tmp)))
    out = {
        k: {
            "wall_median": statistics.median(w for w, _ in v),
            "wall_min": min(w for w, _ in v),
            "wall_max": max(w for w, _ in v),
            "peak_mib": max(m for _, m in v),
        }
        for k, v in runs.items()
    }
    out["wall_ratio"] = out["framework"]["wall_median"] / out["plain"]["wall_median"]
    out["memory_ratio"] = out["framework"]["peak_mib"] / out["plain"]["peak_mib"]
    return out


SWEEPS = {  # the sweeps of the fused-launcher issue: activations x Adam learning rates (x seeds)
    12: ["activation=relu,leaky_relu,alrelu,elu", "optimizer.lr=0.001,0.003,0.01"],
    36: ["activation=relu,leaky_relu,alrelu,elu", "optimizer.lr=0.001,0.003,0.01", "seed=0,1,2"],
    48: ["activation=relu,leaky_relu,alrelu,elu", "optimizer.lr=0.0003,0.001,0.003,0.01", "seed=0,1,2"],
}


def sweep(jobs: int, device: str, repeats: int, n_jobs: int | None) -> dict:
    """The same sweep under Hydra's basic launcher, the fused launcher (and joblib with ``n_jobs``),
    alternating; and one job of it alone (``python train.py``), whole processes all."""
    accel = "gpu" if device.startswith("cuda") else "cpu"
    train = [sys.executable, str(ROOT / "train.py")]
    common = ["callbacks.progress_bar=null", f"trainer.accelerator={accel}"]
    variants = {
        "one job alone": train + [*common, "print_config=false"],
        "basic": train + ["-m", *common, *SWEEPS[jobs]],
        "fused": train + ["-m", *common, *SWEEPS[jobs], "hydra/launcher=fused"],
    }
    if n_jobs:
        variants[f"joblib (n_jobs={n_jobs})"] = variants["basic"] + [
            "hydra/launcher=joblib",
            f"hydra.launcher.n_jobs={n_jobs}",
        ]
    walls: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):  # alternating, so drift in machine speed hits every launcher alike
            for name, cmd in variants.items():
                start = time.perf_counter()
                subprocess.run(cmd, cwd=tmp, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                walls[name].append(time.perf_counter() - start)
    out: dict = {"jobs": jobs, "overrides": SWEEPS[jobs], "repeats": repeats}
    for name, values in walls.items():
        n = 1 if name == "one job alone" else jobs
        out[name] = {
            "wall_median": statistics.median(values),
            "wall_min": min(values),
            "wall_max": max(values),
            "per_job": statistics.median(values) / n,
        }
    out["basic_over_fused"] = out["basic"]["wall_median"] / out["fused"]["wall_median"]
    out["fused_over_one_job"] = out["fused"]["wall_median"] / out["one job alone"]["wall_median"]
    return out


def stacked_step(jobs: int, device: str, repeats: int, steps: int = 40) -> dict:
    """The arithmetic alone: one training step of the sweep's members stacked (``fused.FusedClassifier``,
    as ``hydra/launcher=fused`` trains them) against the same members stepped one after another as separate
    models (each its own network, loss and optimizer); the same batches (batch size from the config), each:
    forward, loss, backward, the optimizer's step, and no Lightning. Alternating, ``repeats`` rounds of
    ``steps`` steps; milliseconds a step for all members."""
    import copy
    import itertools

    from hydra import compose, initialize_config_dir

    from experiments.fused.members import Member, build_members, order_members
    from experiments.fused.stacked import FusedClassifier
    from experiments.nn.optimizers import build_optimizer
    from experiments.run.resolvers import register_resolvers

    register_resolvers()
    swept = [[f"{key}={v}" for v in values.split(",")] for key, values in (o.split("=", 1) for o in SWEEPS[jobs])]
    accel = "gpu" if device.startswith("cuda") else "cpu"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfgs = [
            compose(config_name="config", overrides=[f"trainer.accelerator={accel}", *job])
            for job in itertools.product(*swept)
        ]
    members, groups = order_members([Member(i, c, Path("."), {}, []) for i, c in enumerate(cfgs)])
    data, classifiers = build_members(members)
    data.setup("fit")
    # copied before they are stacked: the stacked model makes each member's layers views into its stacks
    separate = [copy.deepcopy(c.net).to(device) for c in classifiers]
    stacked = FusedClassifier(classifiers, groups).to(device)
    optimizer = stacked.configure_optimizers()
    optimizers = [build_optimizer(c.hparams.optimizer, net.parameters()) for c, net in zip(classifiers, separate)]
    losses = [c.loss_fn for c in classifiers]
    batches = [(x.to(device), y.to(device)) for x, y in itertools.islice(iter(data.train_dataloader()), steps)]

    def run_stacked() -> None:
        for x, y in batches:
            stacked.member_losses(stacked(x), y).sum().backward()
            optimizer.step()
            optimizer.zero_grad()

    def run_separate() -> None:
        for x, y in batches:
            for k, (net, opt, loss_fn) in enumerate(zip(separate, optimizers, losses)):
                loss_fn(net(x[k]), y[k]).backward()
                opt.step()
                opt.zero_grad()

    times: dict[str, list[float]] = {"stacked": [], "separate": []}
    for _ in range(repeats + 1):  # the first round warms up
        for name, fn in (("stacked", run_stacked), ("separate", run_separate)):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / steps * 1000)
    out: dict = {"jobs": jobs, "members": len(members), "optimizer_groups": len(groups), "steps": steps}
    for name, values in times.items():
        out[name] = {"ms_median": statistics.median(values[1:]), "ms_min": min(values[1:]), "ms_max": max(values[1:])}
    out["separate_over_stacked"] = out["separate"]["ms_median"] / out["stacked"]["ms_median"]
    return out


def diagnostics_cost(device: str, epochs: int, batch: str) -> dict:
    """Seconds spent inside the diagnostics callbacks, against the epochs' own seconds."""
    import functools

    from experiments.lit import diagnostics

    spent = {"seconds": 0.0}

    def timed(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            spent["seconds"] += time.perf_counter() - start
            return out

        return wrapper

    hooks = [
        (diagnostics.DeadUnitMonitor, "on_train_start"),
        (diagnostics.DeadUnitMonitor, "on_train_epoch_end"),
        (diagnostics.GradNormMonitor, "on_before_optimizer_step"),
        (diagnostics.HistogramMonitor, "on_train_epoch_end"),
    ]
    originals = [(cls, name, getattr(cls, name)) for cls, name in hooks]
    for cls, name, fn in originals:
        setattr(cls, name, timed(fn))
    try:
        result = framework_epochs(device, epochs, batch, False, [])
    finally:
        for cls, name, fn in originals:
            setattr(cls, name, fn)
    total = sum(result["epoch_seconds"])
    return {
        "diagnostics_seconds": spent["seconds"],
        "epoch_seconds": total,
        "fraction_of_epoch_time": spent["seconds"] / total,
    }


def count_syncs(device: str, epochs: int, batch: str) -> dict:
    """Every host synchronisation of a framework run, by source line, and per training step."""
    import collections
    import warnings

    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        framework_epochs(device, epochs, batch, False, [])
    torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    where = collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)
    steps = epochs * -(-55_000 // (55_000 if batch == "full" else int(batch)))
    return {
        "total": len(syncs),
        "training_steps": steps,
        "per_step": len(syncs) / steps,
        "by_line": dict(where.most_common(15)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", default="256", help="an integer, or full (full-batch gradient descent)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of plain and framework (0: none)")
    parser.add_argument("--compile", action="store_true", help="also time the framework with compile=true")
    parser.add_argument("--whole", action="store_true", help="whole-process time and peak memory")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also time the framework without diagnostics, callbacks and logger, one after another",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", action="store_true", help="a sweep under the basic and the fused launcher")
    parser.add_argument("--sweep-jobs", type=int, choices=sorted(SWEEPS), default=12)
    parser.add_argument(
        "--stacked-step",
        action="store_true",
        help="the --sweep-jobs members' step, stacked and as separate models (arithmetic alone)",
    )
    parser.add_argument("--n-jobs", type=int, default=None, help="also time the joblib launcher with this many jobs")
    parser.add_argument(
        "--diagnostics-cost",
        action="store_true",
        help="time spent in the diagnostics callbacks as a share of the epochs",
    )
    parser.add_argument("--sync-debug", action="store_true", help="warn on every host synchronisation (CUDA)")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="also write the tables, with the date, commit, machine and command, as a Markdown page "
        "(docs/performance.md)",
    )
    args = parser.parse_args()
    if args.markdown is not None and not args.markdown.parent.is_dir():
        parser.error(f"--markdown {args.markdown}: {args.markdown.parent} is not a directory")
    tables: list[str] = []

    def say(text: str) -> None:
        """A line of the printed tables, kept for ``--markdown``."""
        print(text)
        tables.append(text)

    report: dict = {
        "device": args.device,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
    }
    batch = "full" if args.batch_size == "full" else int(args.batch_size)
    optimizer = "gd" if batch == "full" else "adam"
    if args.diagnostics_cost:
        report["diagnostics_cost"] = diagnostics_cost(args.device, args.epochs, args.batch_size)
        return print(json.dumps(report["diagnostics_cost"], indent=2))
    if args.sync_debug:
        report["host_syncs"] = count_syncs(args.device, args.epochs, args.batch_size)
        return print(json.dumps(report["host_syncs"], indent=2))

    if args.rounds > 0:  # --rounds 0: only the --whole / --sweep figures
        # Rounds alternate plain and framework, so drift in the machine's speed hits both alike;
        # each figure is the median over every steady-state epoch of every round.
        variants = [
            ("plain PyTorch loop", lambda: plain_mnist.train(args.device, args.epochs, batch, optimizer=optimizer)),
            ("framework (defaults)", lambda: framework_epochs(args.device, args.epochs, args.batch_size, False, [])),
        ]
        if batch != "full":
            variants.append(("bare Lightning Trainer", lambda: bare_lightning_epochs(args.device, args.epochs, batch)))
        if args.ablation:  # what each default part costs: the framework with parts switched off
            for parts in (
                ["diagnostics=none"],
                ["diagnostics=none", "callbacks=none"],
                ["diagnostics=none", "callbacks=none", "logger=none"],
            ):
                variants.append(
                    (
                        f"framework, {' '.join(parts)}",
                        lambda p=parts: framework_epochs(args.device, args.epochs, args.batch_size, False, p),
                    )
                )
        if args.compile:
            modes = [True, "reduce-overhead"] if args.device.startswith("cuda") else [True]
            for mode in modes:
                variants.append(
                    (
                        f"framework, compile={str(mode).lower()}",
                        lambda m=mode: framework_epochs(args.device, args.epochs, args.batch_size, m, []),
                    )
                )
        epochs: dict[str, list[float]] = {name: [] for name, _ in variants}
        accs: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, fn in variants:
                result = fn()
                epochs[name] += (
                    result["epoch_seconds"][1:] if len(result["epoch_seconds"]) > 1 else result["epoch_seconds"]
                )
                accs[name] = result["test_acc"]
        base = statistics.median(epochs[variants[0][0]])
        report["per_epoch"] = [
            {
                "what": n,
                "median_epoch_s": statistics.median(e),
                "min": min(e),
                "max": max(e),
                "ratio": statistics.median(e) / base,
                "test_acc": accs[n],
            }
            for n, e in epochs.items()
        ]

        say(
            f"\n## Per epoch ({args.device}, batch {args.batch_size}, epochs 2-{args.epochs} of {args.rounds} rounds)\n"
        )
        say("| run | median s/epoch (min-max) | ratio to plain | test acc |\n|---|---|---|---|")
        for r in report["per_epoch"]:
            say(
                f"| {r['what']} | {r['median_epoch_s']:.4f} ({r['min']:.4f}-{r['max']:.4f}) | {r['ratio']:.2f} "
                f"| {r['test_acc']:.4f} |"
            )

    if args.whole:
        w = report["whole_process"] = whole_process(args.device, args.repeats)
        say(f"\n## Whole process (median of {args.repeats}, min-max)\n")
        say("| command | wall s | peak memory MiB |\n|---|---|---|")
        for name, label in (("framework", "python train.py"), ("plain", "python scripts/plain_mnist.py")):
            say(
                f"| `{label}` | {w[name]['wall_median']:.2f} ({w[name]['wall_min']:.2f}-{w[name]['wall_max']:.2f})"
                f" | {w[name]['peak_mib']:.0f} |"
            )
        say(f"| ratio | {w['wall_ratio']:.2f} | {w['memory_ratio']:.2f} |")
    if args.sweep:
        s = report["sweep"] = sweep(args.sweep_jobs, args.device, args.repeats, args.n_jobs)
        say(f"\n## {args.sweep_jobs}-job sweep, 2 epochs each ({args.device}; median of {args.repeats}, min-max)\n")
        say(f"`python train.py -m {' '.join(SWEEPS[args.sweep_jobs])} [hydra/launcher=...]`\n")
        say("| launcher | wall s | s per job |\n|---|---|---|")
        for name in (k for k in s if isinstance(s[k], dict)):
            r = s[name]
            say(f"| {name} | {r['wall_median']:.1f} ({r['wall_min']:.1f}-{r['wall_max']:.1f}) | {r['per_job']:.2f} |")
        say(
            f"\nbasic / fused: {s['basic_over_fused']:.2f}x; "
            f"fused sweep / one job alone: {s['fused_over_one_job']:.2f}x"
        )
    if args.stacked_step:
        t = report["stacked_step"] = stacked_step(args.sweep_jobs, args.device, args.repeats)
        say(
            f"\n## One training step of the {t['members']} members ({args.device}; {t['optimizer_groups']} optimizer "
            f"groups; median of {args.repeats} rounds of {t['steps']} steps, min-max)\n"
        )
        say("| how | ms a step, all members |\n|---|---|")
        labels = {"stacked": "stacked (`hydra/launcher=fused`)", "separate": "separate models, one after another"}
        for name, label in labels.items():
            say(f"| {label} | {t[name]['ms_median']:.2f} ({t[name]['ms_min']:.2f}-{t[name]['ms_max']:.2f}) |")
        say(f"\nseparate / stacked: {t['separate_over_stacked']:.2f}x")
    if args.device.startswith("cuda"):
        report["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20

    out = ROOT / "outputs" / "benchmark" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {out / 'benchmark.json'}")
    if args.markdown is not None:
        args.markdown.write_text(markdown_page(report, tables))
        print(f"written to {args.markdown}")


def markdown_page(report: dict, tables: list[str]) -> str:
    """The run's own tables under what produced them: date, commit, machine and the command line."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    )
    revision = (commit.stdout.strip() or "unknown") + (" with uncommitted changes" if dirty.stdout.strip() else "")
    machine = (
        f"{platform.machine()}, {report['cpus']} CPU cores, {report['gpu'] or 'no GPU'}; Python "
        f"{report['python']}, torch {report['torch']}"
    )
    command = " ".join(["python", "scripts/benchmark.py", *sys.argv[1:]])
    header = [
        "# Performance",
        "",
        "Generated by the benchmark itself; do not edit by hand. Regenerate with the command below (it writes",
        "this page with `--markdown docs/performance.md`). The machine is shared and its speed drifts between",
        "runs: read each ratio within its own run. What each table measures: `python scripts/benchmark.py --help`.",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- commit: {revision}",
        f"- machine: {machine}",
        f"- command: `{command}`",
    ]
    return "\n".join([*header, *tables]).rstrip() + "\n"


if __name__ == "__main__":
    main()
