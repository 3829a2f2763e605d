"""``python -m hnnlab``: the ``hnnlab`` command line."""

from hnnlab.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
