"""`python -m transcriber`: run the transcriber service until SIGTERM."""

from scribe.runtime import main

if __name__ == "__main__":
    main(["transcriber"])
