"""``hydra/sweeper=finish``: a stopped grid sweep finished in place (``python train.py finish=<sweep_dir>``)."""
