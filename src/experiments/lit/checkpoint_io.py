"""The checkpoint writer (a Lightning ``CheckpointIO`` plugin) that a kill -9 cannot leave half-written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside the target and renamed over it.

    Lightning's own ``TorchCheckpointIO`` writes through an fsspec transaction whose temporary file
    lies in the system's temp directory; where that is another filesystem (a tmpfs ``/tmp``), the final
    move is a copy, and a kill -9 during it leaves a truncated checkpoint. A rename within one
    directory is atomic: a kill -9 mid-save leaves the previous checkpoint whole.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
