"""`python -m mtl_tune ...`: the same command line as `mtl-tune ...`."""

from mtl_tune.cli import main

main()
