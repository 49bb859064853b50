"""Train the MNIST MLP: ``python train.py [group=option ...] [key=value ...]`` (see README.md)."""

from experiments.errors import ctrl_c_in_one_line

with ctrl_c_in_one_line():  # Ctrl-C while Python imports: one line, not a traceback
    from experiments.names import CONF_DIR
    from experiments.run.cli import train_main
    from experiments.run.command_line import hydra_main
    from experiments.run.resolvers import register_resolvers

    main = hydra_main(str(CONF_DIR), "config", train_main)

if __name__ == "__main__":
    with ctrl_c_in_one_line():
        register_resolvers()
        main()
