"""Hydra's launcher ``fused`` (``hydra/launcher=fused``): see ``fused_launcher.py``."""
