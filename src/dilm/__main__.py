"""`python -m dilm` is the `dilm` command."""

from dilm.cli import main

main()
