"""``hydra/launcher=fused``: which sweep jobs train as one stacked model, the stacked module, its members' runs."""
