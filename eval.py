"""Evaluate a checkpoint on the MNIST test set: ``python eval.py ckpt_path=<file>`` (see README.md)."""

from pathlib import Path

import hydra

from experiments.run.cli import eval_main, register_resolvers

CONF = str(Path(__file__).resolve().parent / "conf")
main = hydra.main(version_base="1.3", config_path=CONF, config_name="eval")(eval_main)

if __name__ == "__main__":
    register_resolvers()
    main()
