"""``hydra/sweeper=optuna``: the project's own Optuna sweeper, where ``hydra-optuna-sweeper`` used to be (same module
path, so a config naming ``hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper`` runs as it is)."""
