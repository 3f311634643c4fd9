"""``python -m stagegraph``: the command line (``torchrun -m stagegraph run EXP`` starts here)."""

from stagegraph.cli import main

raise SystemExit(main())
