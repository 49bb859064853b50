"""Sweep reports: the table, the plots, and ``python -m experiments.reports <sweep_dir>``."""
