"""`python -m streamer`: run the streamer service until SIGTERM."""

from scribe.runtime import main

if __name__ == "__main__":
    main(["streamer"])
