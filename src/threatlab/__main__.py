"""`python -m threatlab`: the same as the `threatlab` command."""

from threatlab.cli import main

if __name__ == "__main__":
    main(prog_name="threatlab")
