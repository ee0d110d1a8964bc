"""`python -m probe.cli ARGS` runs the command line as the `probe` script does."""

from probe.cli import main

main()
