"""Checkpoint safety: what a run or eval.py reads from a checkpoint file before anything is built from it.

``read_checkpoint`` loads with ``weights_only=True`` (tensors and plain containers), names a file that is
no checkpoint or one that would need arbitrary unpickling, and checks every class its hyperparameters name
against the catalogue of ``conf/``, so a crafted checkpoint cannot make the rebuild call anything else.
``resume_mismatches`` says what of a checkpoint does not fit the run that would resume it.
"""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from experiments import names
from experiments.config import catalogue
from experiments.errors import CheckpointError
from experiments.lit.classifier import Classifier
from experiments.read_back import damaged, plain


def _names_objects(path: str | Path) -> bool:
    """Whether the file is a pickle (or a torch zip around one) that names Python callables to rebuild
    objects with: what ``weights_only`` refuses for safety, as opposed to bytes that are no pickle at all."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                raw = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
        else:
            raw = Path(path).read_bytes()
        return any(op.name in _OBJECT_OPCODES for op, _, _ in pickletools.genops(raw))
    except Exception:  # not a pickle: nothing in it could run
        return False


_OBJECT_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"}


# Where the project's classes lived before the package was cut into layers. Checkpoints written then name
# them so; they are the same classes, moved, and such checkpoints load as they did.
MOVED = {
    "experiments.model.": "experiments.nn.model.",
    "experiments.activations.": "experiments.nn.activations.",
    "experiments.losses.": "experiments.nn.losses.",
    "experiments.optimizers.": "experiments.nn.optimizers.",
}


def _moved(value: Any) -> Any:
    """``value`` with every ``_target_`` that names a class where it used to live named where it lives now."""
    if isinstance(value, dict):
        out = {k: _moved(v) for k, v in value.items()}
        target = out.get("_target_")
        old = next((o for o in MOVED if isinstance(target, str) and target.startswith(o)), None)
        if old is not None and target.count(".") == old.count("."):
            out["_target_"] = MOVED[old] + target.removeprefix(old)
        return out
    if isinstance(value, list):
        return [_moved(v) for v in value]
    return value


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` (tensors and plain containers only), and a checkpoint's shape."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever the bytes are, reading them is refused with what they are
        if isinstance(exc, pickle.UnpicklingError) and _names_objects(path):
            raise CheckpointError(
                f"{path}: refusing to load, the file holds objects that only arbitrary unpickling could rebuild; "
                f"checkpoints written by this project contain only tensors and plain containers. Load it only if "
                f"you trust its source, outside this tool."
            ) from None
        detail = str(exc).splitlines()[0][:160] if str(exc).strip() else "no detail"
        raise CheckpointError(
            f"{path}: not a checkpoint, or a truncated one ({type(exc).__name__}: {detail})"
        ) from None
    missing = [k for k in ("state_dict", "hyper_parameters") if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        kind = "a dict" if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path}: not a checkpoint of this project ({kind} without {' or '.join(missing)})")
    hparams = checkpoint["hyper_parameters"] = _moved(checkpoint["hyper_parameters"])
    check_settings(path, hparams, checkpoint.get("datamodule_hyper_parameters"))
    return checkpoint


def searchpath_of(path: str | Path) -> str | None:
    """The ``hydra.searchpath`` a checkpoint's run was made with (its ``.hydra/hydra.yaml``, beside
    ``checkpoints/``), to name in a refusal: the user's own config directories its classes come from."""
    from experiments.read_back import read_yaml

    try:
        entries = (read_yaml(Path(path).parent.parent / ".hydra" / "hydra.yaml") or {})["hydra"]["searchpath"]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    shown = [e for e in entries if isinstance(e, str) and e.isprintable()] if isinstance(entries, list) else []
    return f"[{','.join(shown)}]" if shown else None


SIZES = {"input_size": 1 << 24, "num_classes": 1 << 20}  # the classifier's own arguments beside the groups


def check_settings(path: str | Path, hparams: Any, data: Any) -> None:
    """The settings a checkpoint carries (``hyper_parameters``; ``datamodule_hyper_parameters``, whose
    ``normalize`` eval.py and a resume take) held to the rule of every file read back (``read_back``): only
    the groups' own ``_target_``s name a class, each one the catalogue allows, and every value within the
    range the command line would be held to; one line naming the key otherwise."""
    from experiments.config.rules import rule_problems, section_rules

    groups = names.group_names(network=True)
    for key, value in (("hyper_parameters", hparams), ("datamodule_hyper_parameters", data or {})):
        if not isinstance(value, dict):
            raise damaged(path, key, f"is a {type(value).__name__}, not a mapping")
    scheduler = hparams.get("scheduler")
    if scheduler is not None and not isinstance(scheduler, dict):
        raise damaged(path, "hyper_parameters.scheduler", f"is {scheduler!r}, not a mapping")
    built = [(g, hparams.get(g)) for g in groups] + [("scheduler", (scheduler or {}).get("scheduler"))]
    try:
        for group, cfg in (b for b in built if b[0] != "scheduler" or b[1] is not None):
            catalogue.check(group, cfg, source=str(path))
    except CheckpointError as exc:
        made_with = searchpath_of(path)
        raise CheckpointError(
            f"{exc}; its run was made with 'hydra.searchpath={made_with}'" if made_with else str(exc)
        ) from None
    allowed = {f"hyper_parameters.{g}._target_" for g in groups} | {"hyper_parameters.scheduler.scheduler._target_"}
    plain(hparams, path, "hyper_parameters", frozenset(allowed))  # the rest of it, and the data's, name none
    plain(data, path, "datamodule_hyper_parameters")
    for key, most in SIZES.items():
        if not (type(hparams.get(key, 1)) is int and 1 <= hparams.get(key, 1) <= most):
            raise damaged(path, f"hyper_parameters.{key}", f"is {hparams[key]!r}, not an integer in [1, {most}]")
    settings = OmegaConf.create({**{g: hparams.get(g) for g in groups}, "data": data or {}})
    if found := rule_problems(settings, section_rules(*groups, "data.normalize")):
        problem = found[0]  # data.* comes from the data module's own settings
        raise damaged(
            path,
            problem.replace("data.", "datamodule_hyper_parameters.", 1)
            if problem.startswith("data.")
            else f"hyper_parameters.{problem}",
            "",
        )


def resume_mismatches(checkpoint: dict[str, Any], hparams: dict[str, Any]) -> list[str]:
    """What of the network, its optimizer or its input scaling differs between a checkpoint and the run that
    would resume it: the weights or the optimizer state would not fit, or would meet other inputs."""
    saved = checkpoint["hyper_parameters"]
    found = []
    for group in ("model", "activation"):
        for key in sorted(set(saved.get(group) or {}) | set(hparams.get(group) or {})):
            was, now = (saved.get(group) or {}).get(key), (hparams.get(group) or {}).get(key)
            if was != now and key not in ("init", "bias_init", "dropout"):  # these leave the weights' shapes
                found.append(f"{group}.{key}: {was!r} in the checkpoint, {now!r} in this run")
    for group in ("optimizer", "loss"):
        was, now = (saved.get(group) or {}).get("_target_"), (hparams.get(group) or {}).get("_target_")
        if was != now:
            found.append(f"{group}: {was} in the checkpoint, {now} in this run")
    # weights trained on pixels scaled one way do not continue on pixels scaled another
    was = (checkpoint.get("datamodule_hyper_parameters") or {}).get("normalize")
    now = (hparams.get("data") or {}).get("normalize")
    if was is not None and "data" in hparams and was != now:
        found.append(f"data.normalize: {was!r} in the checkpoint, {now!r} in this run")
    return found


def read_resumable(path: str | Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint a run resumes from, as ``read_checkpoint`` reads it, refused where it holds no training
    state or does not fit the run's ``settings`` (its groups' and data's config, as plain dicts)."""
    checkpoint = read_checkpoint(path)
    if not checkpoint.get("optimizer_states") or "loops" not in checkpoint:
        raise CheckpointError(
            f"ckpt_path={path} holds weights only (a fused sweep member's, or one saved without its training "
            f"state): eval.py tests it, but a run cannot resume from it; train the job again without ckpt_path"
        )
    if mismatches := resume_mismatches(checkpoint, settings):
        raise CheckpointError(
            f"ckpt_path={path} was made for another network, optimizer or input scaling than this run's "
            f"({'; '.join(mismatches)}): resume with the overrides it was trained with"
        )
    refuse_unfit(path, checkpoint, optimizer=True)
    return checkpoint


def unfit_tensors(checkpoint: dict[str, Any], module: torch.nn.Module, optimizer: bool = False) -> list[str]:
    """What of a checkpoint's weights (and of its optimizer state, with ``optimizer``: a resume uses it) does
    not fit the network its own hyperparameters build (``module``): a file damaged or edited by hand. Said per
    tensor, before ``load_state_dict`` or the first optimizer step would stop with a traceback."""
    expected, saved = module.state_dict(), checkpoint.get("state_dict")
    if not isinstance(saved, dict):
        return [f"state_dict is a {type(saved).__name__}, not a mapping of tensors"]
    found = [f"{key} is missing" for key in expected if key not in saved]
    found += [f"{key} is not a weight of this network" for key in saved if key not in expected]
    for key in (k for k in expected if k in saved):
        value = saved[key]
        if not isinstance(value, torch.Tensor):
            found.append(f"{key} is a {type(value).__name__}, not a tensor")
        elif value.shape != expected[key].shape:
            found.append(f"{key} has shape {list(value.shape)} where the network has {list(expected[key].shape)}")
    params = list(module.parameters())
    for n, state in enumerate(checkpoint.get("optimizer_states") or [] if optimizer else []):
        for index, values in ((state or {}).get("state") or {}).items():
            if not isinstance(index, int) or not 0 <= index < len(params):
                found.append(f"optimizer state {n} is kept for parameter {index!r}; the network has {len(params)}")
                continue
            for name, value in (values or {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != params[index].shape:
                    found.append(
                        f"optimizer state {n}: {name} of parameter {index} has shape {list(value.shape)} where "
                        f"the parameter has {list(params[index].shape)}"
                    )
    return found


def refuse_unfit(path: str | Path, checkpoint: dict[str, Any], optimizer: bool = False) -> None:
    """``unfit_tensors`` against the network the checkpoint's hyperparameters build, as one refusal."""
    with torch.device("meta"):  # the shapes alone: no memory sized by numbers the file holds
        network = Classifier(**checkpoint["hyper_parameters"])
    if found := unfit_tensors(checkpoint, network, optimizer):
        what = "optimizer state does" if all(f.startswith("optimizer state") for f in found) else "weights do"
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        raise CheckpointError(
            f"{path}: its {what} not fit the network its hyperparameters describe ({'; '.join(found[:3])}{more}); "
            f"the file was damaged or edited: use another checkpoint"
        )


def load_classifier(path: str | Path, checkpoint: dict[str, Any] | None = None) -> Classifier:
    """The model of a checkpoint, rebuilt from its saved hyperparameters once they pass the catalogue and its
    weights fit them.

    ``checkpoint``: the file as ``read_checkpoint`` returned it, where the caller has read it already.
    """
    if checkpoint is None:
        checkpoint = read_checkpoint(path)
    refuse_unfit(path, checkpoint)
    hparams = checkpoint["hyper_parameters"]  # as read_checkpoint checked it: moved classes named anew
    return Classifier.load_from_checkpoint(path, map_location="cpu", weights_only=True, **hparams)


def model_and_data(path: str | Path, data: Any, keep_normalize: bool = False) -> tuple[Classifier, Any]:
    """What eval.py tests: a checkpoint's model and the data module of ``data`` (the ``data`` group's config),
    its pixels scaled as in training (the checkpoint's ``normalize``, checked by ``read_checkpoint``) unless
    ``keep_normalize`` (the command line set it)."""
    from hydra.utils import instantiate

    checkpoint = read_checkpoint(path)
    module = load_classifier(path, checkpoint)
    trained = checkpoint.get("datamodule_hyper_parameters", {}).get("normalize")
    if trained and not keep_normalize:
        data.normalize = trained
    datamodule = instantiate(data)
    sizes, fits = (
        (module.hparams.input_size, module.hparams.num_classes),
        (datamodule.input_size, datamodule.num_classes),
    )
    if sizes != fits:
        root = checkpoint.get("datamodule_hyper_parameters", {}).get("root")
        raise CheckpointError(
            f"{path} was trained on {sizes[0]} inputs and {sizes[1]} classes (data.root={root!r}), and "
            f"data.root={data.root!r} holds {fits[0]}-pixel images of {fits[1]} classes: pass the data set it "
            f"was trained on, data.root=<its directory>"
        )
    return module, datamodule
