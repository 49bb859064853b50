"""Evaluate a checkpoint on the MNIST test set: ``python eval.py ckpt_path=<file>`` (see README.md)."""

from experiments.errors import ctrl_c_in_one_line

with ctrl_c_in_one_line():  # Ctrl-C while Python imports: one line, not a traceback
    from experiments.names import CONF_DIR
    from experiments.run.cli import eval_main
    from experiments.run.command_line import hydra_main
    from experiments.run.resolvers import register_resolvers

    main = hydra_main(str(CONF_DIR), "eval", eval_main)

if __name__ == "__main__":
    with ctrl_c_in_one_line("before eval.json was written"):  # eval.py keeps no record to mark
        register_resolvers()
        main()
