"""Hostile input, end to end through train.py and eval.py: bad values, untrusted and broken checkpoints,
damaged data files. Each case must end with its exit status, one line naming the key or the file, no
traceback, no stray or changed file, and the run's record saying what happened."""

import gzip
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from test_checkpoints import edited
from test_rules import BAD, problems_of

from conftest import FAST, ROOT, Finished, run_script
from experiments.run.command_line import unreadable_override

pytestmark = pytest.mark.slow


def run(
    script: str, args: list[str], run_dir: Path | None, stdout: list[str] | None = None, cwd: Path | None = None
) -> tuple[int, list[str]]:
    """The script in this process (``conftest.run_script``) with its run directory ``run_dir`` (None: a sweep, or
    ``finish=``, which takes none), started in ``cwd`` (the run directory's parent unless given): its exit status
    and non-empty stderr lines (its stdout's into ``stdout`` where one is given)."""
    where = cwd or (run_dir.parent if run_dir is not None else Path.cwd())
    proc = run_script([*([f"hydra.run.dir={run_dir}"] if run_dir is not None else []), *args], where, script)
    return ended(proc, stdout)


def ended(proc: Finished, stdout: list[str] | None = None) -> tuple[int, list[str]]:
    """A run's exit status and non-empty stderr lines, with no traceback among them (its stdout's non-empty lines
    into ``stdout`` where one is given)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    if stdout is not None:
        stdout.extend(line for line in proc.stdout.splitlines() if line.strip())
    return proc.returncode, [line for line in proc.stderr.splitlines() if line.strip()]


def one_line(code: int, lines: list[str], expected_code: int, *words: str) -> None:
    assert code == expected_code and len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert all(w in lines[0] for w in words), (words, lines)


def only_the_records(run_dir: Path, script: str = "train") -> None:
    """A refused run leaves its Hydra config, its log and its record: nothing else (no checkpoints, events)."""
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        [".hydra", f"{script}.log"] + (["metrics.json"] if script == "train" else [])
    )


# ---------------------------------------------------------------- 1. every wrong value, through train.py


@pytest.mark.parametrize("override, words", BAD, ids=[b[0] for b in BAD])
def test_a_wrong_value(override, words, tmp_path):
    bar = override.lstrip("+").startswith("callbacks.progress_bar")
    base = [a for a in FAST if not (bar and a.startswith("callbacks."))]
    code, lines = run("train.py", [*base, *override.split()], tmp_path / "run")
    one_line(code, lines, 2, words)
    assert lines[0] == f"Error: {problems_of(override)}"
    if ": did you mean " in lines[0]:  # a misspelt key: answered before Hydra writes anything
        assert not (tmp_path / "run").exists()
        return
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and words in record["error"]
    only_the_records(tmp_path / "run")


@pytest.mark.parametrize(
    "override, setting",
    [
        ("+optimiser=sgd", "optimizer=sgd"),  # what Hydra advises for a misspelt group
        ("+max_epochs=3", "trainer.max_epochs=3"),
        ("+actvation.negative_slope=0.1", "activation.negative_slope=0.1"),
    ],
)
def test_a_misspelt_key_taken_with_a_plus_is_refused_before_anything_is_printed(override, setting, tmp_path):
    out = []
    args = [a for a in FAST if a != "print_config=false"]  # the config dump would come first
    code, lines = run("train.py", [*args, override], tmp_path / "run", out)
    one_line(code, lines, 2, f"write {setting}, without the '+'")
    assert out == [] and not (tmp_path / "run").exists()  # answered before Hydra: nothing written


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
@pytest.mark.parametrize(
    "override, line",
    [
        ("activaton=relu", "{script} has no activaton (did you mean activation?): write activation=relu"),
        ("optimizer.lrr=0.1", "{script} has no optimizer.lrr (did you mean optimizer.lr?): write optimizer.lr=0.1"),
        (
            "data.batchsize=64",
            "{script} has no data.batchsize (did you mean data.batch_size?): write data.batch_size=64",
        ),
        (
            "+optimiser=sgd",
            "optimiser is not read by {script} (did you mean optimizer?): write optimizer=sgd, without the '+'",
        ),
        (
            "zzz=1",
            "{script} has no zzz: python -m experiments lists the groups and python {script} --help every key; "
            "a key the config does not have yet is added with +zzz=1",
        ),
    ],
)
def test_a_misspelt_group_or_key_is_one_line_naming_what_to_type(script, override, line, tmp_path):
    """With or without '+', before Hydra: the line names the key meant and the exact override, nothing is written;
    typed as it says, the override is read."""
    code, lines = run(script, [override], tmp_path / "run")
    assert code == 2 and lines == [f"Error: {line.format(script=script)}"] and not (tmp_path / "run").exists()
    if "write " in line:
        from experiments.run.command_line import misspelt_override

        typed = line.rpartition("write ")[2].removesuffix(", without the '+'")
        assert misspelt_override([typed], script) is None


@pytest.mark.parametrize(
    "script, override",
    [
        ("train.py", "data.root=/tmp/a=b"),
        ("eval.py", "ckpt_path=outputs/multirun/x/0_activation=relu,optimizer.lr=0.1/checkpoints/last.ckpt"),
        ("train.py", "hydra.run.dir=my runs/lr=0.1, try 2"),
    ],
)
def test_an_override_hydra_cannot_read_says_how_to_quote_it(script, override, tmp_path):
    code, lines = run(script, [override], tmp_path / "run")
    key, _, value = override.partition("=")
    one_line(code, lines, 2, f"Hydra cannot read {override!r} (mismatched input '=' expecting <EOF>)")
    assert lines[0].endswith(f"""inside the shell's quotes: '{key}="{value}"'""")
    assert not (tmp_path / "run").exists()
    # quoted as the line says (the shell's quotes gone), Hydra reads it
    (override,) = shlex.split(lines[0].rpartition(": ")[2])
    assert unreadable_override([override]) is None


# ---------------------------------------------------------------- 2. checkpoints


@pytest.mark.parametrize("holds", [[], ["a.ckpt", "checkpoints/last.ckpt"]])
def test_eval_of_a_directory_without_one_checkpoint_it_can_choose_names_what_it_holds(holds, tmp_path):
    directory = tmp_path / "my run"
    (directory / "checkpoints").mkdir(parents=True)
    for name in holds:
        (directory / name).write_bytes(b"")
    code, lines = run("eval.py", [f"ckpt_path='{directory}'"], tmp_path / "eval")
    one_line(code, lines, 2, f"ckpt_path={directory} ")
    if holds:
        assert lines[0].endswith(
            "holds 2 checkpoints and no record of the one its run tested: name one (a.ckpt, checkpoints/last.ckpt)"
        )
    else:
        assert lines[0].endswith("is a directory without checkpoints: name a .ckpt file")


MARKER = "payload-ran"
PAYLOADS = {  # a group of the checkpoint's hyperparameters -> what it would call
    "builtins.open": ("loss", {"_target_": "builtins.open", "_args_": ["{m}", "w"]}),
    "shutil.copyfile": ("activation", {"_target_": "shutil.copyfile", "_args_": ["/etc/hostname", "{m}"]}),
    "os.symlink": ("model", {"_target_": "os.symlink", "_args_": ["/etc/hostname", "{m}"]}),
    "subprocess.run": ("optimizer", {"_target_": "subprocess.run", "_args_": [["touch", "{m}"]]}),
    "os.system": ("loss", {"_target_": "os.system", "_args_": ["touch {m}"]}),
    "nested": (
        "loss",
        {"_target_": "torch.nn.CrossEntropyLoss", "weight": {"_target_": "builtins.open", "_args_": ["{m}", "w"]}},
    ),
}


@pytest.mark.parametrize("script", ["eval.py", "train.py"])
@pytest.mark.parametrize("name", PAYLOADS)
def test_a_checkpoint_that_names_code_to_run(name, script, good_checkpoint, tmp_path):
    marker = tmp_path / MARKER
    group, payload = PAYLOADS[name]
    payload = json.loads(json.dumps(payload).replace("{m}", str(marker)))

    def plant(checkpoint):
        checkpoint["hyper_parameters"][group] = payload

    path = edited(good_checkpoint, tmp_path, plant)
    args = [f"ckpt_path={path}"] + ([*FAST] if script == "train.py" else [])
    code, lines = run(script, args, tmp_path / "run")
    one_line(code, lines, 2, str(path), group)
    assert not marker.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["hostile.ckpt", "run"]
    if script == "train.py":
        assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"
    only_the_records(tmp_path / "run", script.removesuffix(".py"))


NOT_CHECKPOINTS = {
    "/etc/passwd": (lambda tmp: Path("/etc/passwd"), "not a checkpoint, or a truncated one"),
    "empty file": (lambda tmp: (tmp / "x.ckpt").write_bytes(b"") or tmp / "x.ckpt", "not a checkpoint"),
    "text file": (lambda tmp: (tmp / "x.ckpt").write_text("hello\n") and tmp / "x.ckpt", "not a checkpoint"),
    "bare tensor": (lambda tmp: torch.save(torch.ones(3), tmp / "x.ckpt") or tmp / "x.ckpt", "Tensor without"),
    "dict without hyperparameters": (
        lambda tmp: torch.save({"state_dict": {}}, tmp / "x.ckpt") or tmp / "x.ckpt",
        "without hyper_parameters",
    ),
    "list": (lambda tmp: torch.save([1, 2], tmp / "x.ckpt") or tmp / "x.ckpt", "list without"),
    "random bytes (no pickle at all)": (
        lambda tmp: (tmp / "x.ckpt").write_bytes(bytes(range(256))) and tmp / "x.ckpt",
        "not a checkpoint, or a truncated one (UnpicklingError",
    ),
    "a directory": (lambda tmp: (tmp / "d.ckpt").mkdir() or tmp / "d.ckpt", "ckpt_path"),
}


@pytest.mark.parametrize("script", ["eval.py", "train.py"])
@pytest.mark.parametrize("name", NOT_CHECKPOINTS)
def test_a_file_that_is_not_a_checkpoint(name, script, tmp_path):
    make, words = NOT_CHECKPOINTS[name]
    files = tmp_path / "files"
    files.mkdir()
    path = make(files)
    before = sorted(p.name for p in files.iterdir())
    args = [f"ckpt_path={path}"] + ([*FAST] if script == "train.py" else [])
    code, lines = run(script, args, tmp_path / "run")
    one_line(code, lines, 2, str(path), words)
    assert sorted(p.name for p in files.iterdir()) == before
    only_the_records(tmp_path / "run", script.removesuffix(".py"))


def test_a_truncated_checkpoint(good_checkpoint, tmp_path):
    path = tmp_path / "cut.ckpt"
    path.write_bytes(good_checkpoint.read_bytes()[:5000])
    code, lines = run("eval.py", [f"ckpt_path={path}"], tmp_path / "run")
    one_line(code, lines, 2, str(path), "truncated")


def test_weights_of_another_shape_than_the_hyperparameters_say(good_checkpoint, tmp_path):
    def grow(checkpoint):
        checkpoint["state_dict"]["net.output.weight"] = torch.zeros(10, 48)

    path = edited(good_checkpoint, tmp_path, grow)
    code, lines = run("eval.py", [f"ckpt_path={path}"], tmp_path / "run")
    one_line(code, lines, 2, str(path), "weights do not fit", "net.output.weight")


@pytest.fixture(scope="module")
def resumable(tmp_path_factory) -> Path:
    """A run's last.ckpt as train.py writes it: what a resume reads."""
    run_dir = tmp_path_factory.mktemp("resumable") / "run"
    assert run("train.py", FAST, run_dir)[0] == 0
    return run_dir / "checkpoints" / "last.ckpt"


def _weight_of_another_shape(c):
    c["state_dict"]["net.output.weight"] = torch.zeros(10, 48)


def _weight_missing(c):
    del c["state_dict"]["net.output.bias"]


def _weight_no_tensor(c):
    c["state_dict"]["net.hidden.0.linear.bias"] = [0.0] * 64


def _optimizer_state_of_another_shape(c):
    c["optimizer_states"][0]["state"][0]["exp_avg"] = torch.zeros(3)


UNFIT = {  # a damage -> (what the line says is wrong, the words that say it)
    "shape": (
        _weight_of_another_shape,
        "weights",
        "net.output.weight has shape [10, 48] where the network has [10, 64]",
    ),
    "missing": (_weight_missing, "weights", "net.output.bias is missing"),
    "no tensor": (_weight_no_tensor, "weights", "net.hidden.0.linear.bias is a list, not a tensor"),
    "optimizer": (_optimizer_state_of_another_shape, "optimizer state", "exp_avg of parameter 0 has shape [3]"),
}


@pytest.mark.parametrize("script", ["eval.py", "train.py"])
@pytest.mark.parametrize("damage", UNFIT)
def test_a_checkpoint_whose_tensors_do_not_fit_its_own_network(damage, script, resumable, tmp_path):
    edit, what, words = UNFIT[damage]
    path = edited(resumable, tmp_path, edit)
    args = [f"ckpt_path={path}"] + ([*FAST, "trainer.max_epochs=2"] if script == "train.py" else ["progress_bar=false"])
    if script == "eval.py" and what == "optimizer state":  # eval.py reads the weights only: it tests them
        assert run(script, args, tmp_path / "run")[0] == 0
        return
    code, lines = run(script, args, tmp_path / "run")
    one_line(code, lines, 2, f"{path}: its {what} do", "not fit the network its hyperparameters describe", words)


@pytest.mark.parametrize(
    "override, words",
    [
        ([], "model.hidden_sizes: [32] in the checkpoint, [64, 64, 64] in this run"),
        (
            ["model.hidden_sizes=[32]", "activation=prelu", "activation.num_parameters=per_unit"],
            "activation._target_: 'torch.nn.ReLU' in the checkpoint, 'torch.nn.PReLU' in this run",
        ),
        (
            ["model.hidden_sizes=[32]", "optimizer=sgd"],
            "optimizer: torch.optim.Adam in the checkpoint, torch.optim.SGD",
        ),
        (
            ["model.hidden_sizes=[32]", "data.normalize=unit"],
            "data.normalize: 'standardize' in the checkpoint, 'unit' in this run",
        ),
    ],
)
def test_resuming_from_another_architecture(override, words, good_checkpoint, tmp_path):
    code, lines = run("train.py", [*FAST, f"ckpt_path={good_checkpoint}", *override], tmp_path / "run")
    one_line(code, lines, 2, f"ckpt_path={good_checkpoint} was made for another network", words)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"
    only_the_records(tmp_path / "run")


@pytest.mark.parametrize(
    "accelerator, words",
    [
        ("abc", "accelerator='abc' is invalid: must be one of auto, cpu, gpu, cuda, mps, tpu"),
        ("tpu", "accelerator='tpu' is not available: torch_xla is not installed"),
        *(
            [("gpu", "accelerator='gpu' is not available: PyTorch sees no CUDA GPU here")]
            if not torch.cuda.is_available()
            else []
        ),
    ],
)
def test_eval_on_an_accelerator_this_machine_lacks(accelerator, words, good_checkpoint, tmp_path):
    code, lines = run("eval.py", [f"ckpt_path={good_checkpoint}", f"accelerator={accelerator}"], tmp_path / "run")
    one_line(code, lines, 2, words)
    only_the_records(tmp_path / "run", "eval")


def test_eval_without_a_checkpoint(tmp_path):
    code, lines = run("eval.py", [], tmp_path / "run")
    one_line(code, lines, 2, "ckpt_path is required")


# ---------------------------------------------------------------- 3. damaged data files


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def unpacked(name: str) -> bytes:
    return gzip.decompress((ROOT / "data" / "mnist" / f"{name}.gz").read_bytes())


DAMAGE = {  # file as it lies in data.root -> its damaged bytes
    "deflate stream": ("train-labels-idx1-ubyte.gz", lambda b: flip(b, len(b) // 2)),
    "gzip CRC": ("t10k-labels-idx1-ubyte.gz", lambda b: flip(b, len(b) - 6)),
    "gzip magic": ("t10k-labels-idx1-ubyte.gz", lambda b: b"\x00\x00" + b[2:]),
    "truncated gzip": ("t10k-images-idx3-ubyte.gz", lambda b: b[: len(b) // 3]),
    "empty gzip": ("t10k-labels-idx1-ubyte.gz", lambda b: b""),
    "unpacked, wrong magic": (
        "t10k-labels-idx1-ubyte",
        lambda b: unpacked("t10k-labels-idx1-ubyte")[:2] + b"\x09" + unpacked("t10k-labels-idx1-ubyte")[3:],
    ),
    "unpacked, wrong count": ("t10k-labels-idx1-ubyte", lambda b: flip(unpacked("t10k-labels-idx1-ubyte"), 7)),
    "unpacked, truncated": ("t10k-labels-idx1-ubyte", lambda b: unpacked("t10k-labels-idx1-ubyte")[:-10]),
    "unpacked, one label changed (only the MD5 sees it)": (
        "train-labels-idx1-ubyte",
        lambda b: flip(unpacked("train-labels-idx1-ubyte"), 100),
    ),
}


@pytest.mark.parametrize("name", DAMAGE)
def test_a_damaged_data_file(name, tmp_path):
    target, damage = DAMAGE[name]
    root = tmp_path / "mnist"
    root.mkdir()
    for f in (ROOT / "data" / "mnist").iterdir():  # the set with its MD5SUMS: the sums are checked where given
        if f.name.removesuffix(".gz") != target.removesuffix(".gz"):
            shutil.copyfile(f, root / f.name)
    original = (ROOT / "data" / "mnist" / f"{target.removesuffix('.gz')}.gz").read_bytes()
    (root / target).write_bytes(damage(original))
    code, lines = run("train.py", [*FAST, f"data.root={root}", "data.download=false"], tmp_path / "run")
    one_line(code, lines, 2, f"{root / target}: checksum failed", "restore it")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"
    only_the_records(tmp_path / "run")


def test_a_missing_data_file_without_download(tmp_path):
    root = tmp_path / "mnist"
    root.mkdir()
    for f in (ROOT / "data" / "mnist").glob("t10k*.gz"):
        shutil.copyfile(f, root / f.name)
    code, lines = run("train.py", [*FAST, f"data.root={root}", "data.download=false"], tmp_path / "run")
    one_line(code, lines, 2, f"data.root={root} lacks train-images-idx3-ubyte")
    assert sorted(os.listdir(root)) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


@pytest.mark.parametrize("outcome", ["completed", "diverged"])
def test_train_log_ends_with_the_line_the_console_ended_with(outcome, tmp_path, request):
    if outcome == "diverged":  # caught at the first logging step, step 5
        run_dir, proc = request.getfixturevalue("diverged_run")
        code, lines = ended(proc)
    else:
        out: list[str] = []
        run_dir = tmp_path / "run"
        code, lines = run("train.py", FAST, run_dir, out)
    last = out[-1] if outcome == "completed" else lines[-1]
    assert code == (0 if outcome == "completed" else 1)
    assert last.startswith("test/acc=" if outcome == "completed" else "Error: diverged in epoch 1, step 5")
    logged = (run_dir / "train.log").read_text().splitlines()[-1]  # in the log's format: time, level
    assert re.fullmatch(rf"\[\d\d:\d\d:\d\d\]\[(INFO|ERROR)\] {re.escape(last)}", logged), logged
