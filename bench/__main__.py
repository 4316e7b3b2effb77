"""Command line of the benchmarks: ``python -m bench [ladder|dataset|serve|inprocess] …``."""

from bench.cli import main

if __name__ == "__main__":
    main()
