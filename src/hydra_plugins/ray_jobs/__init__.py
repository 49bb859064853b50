"""``hydra/launcher=ray`` (``conf/hydra/launcher/ray.yaml``): see ``ray_jobs.py``."""
