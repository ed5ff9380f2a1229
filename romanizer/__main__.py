"""`python -m romanizer`: run the romanizer service until SIGTERM."""

from scribe.runtime import main

if __name__ == "__main__":
    main(["romanizer"])
