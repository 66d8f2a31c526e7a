"""`python -m harness.cli ...` runs the command line."""

from harness.cli import main

main()
