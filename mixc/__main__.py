"""`python -m mixc ...`: the command line, where the console script is not on PATH."""

from mixc.cli import main

main()
