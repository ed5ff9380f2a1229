"""`python -m scribe`: the same as the `scribe` command."""

from scribe.cli import main

if __name__ == "__main__":
    main()
