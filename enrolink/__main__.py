"""``python -m enrolink``: the same command line as the ``enrolink`` script."""

from enrolink.cli import main

# uvicorn's --workers spawns processes that import the main module again (as __mp_main__);
# the guard keeps them from running the command line a second time.
if __name__ == "__main__":
    raise SystemExit(main())
