"""Configs before anything is built: the rules every value passes, the catalogue of classes, Hydra's callbacks."""
