"""`python -m ncf ...` is the same as the `ncf` command."""

from ncf.cli import main

main()
