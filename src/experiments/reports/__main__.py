"""``python -m experiments.reports <sweep_dir>``: rebuild a sweep's report."""

from experiments.reports.cli import main

if __name__ == "__main__":
    main()
