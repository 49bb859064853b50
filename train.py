"""Train the MNIST MLP: ``python train.py [group=option ...] [key=value ...]`` (see README.md)."""

from pathlib import Path

import hydra

from experiments.run.cli import register_resolvers, train_main

CONF = str(Path(__file__).resolve().parent / "conf")
main = hydra.main(version_base="1.3", config_path=CONF, config_name="config")(train_main)

if __name__ == "__main__":
    register_resolvers()
    main()
