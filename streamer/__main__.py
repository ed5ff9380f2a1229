"""`python -m streamer`: run the streamer service until SIGTERM (needs SCRIBE_NATS_URL and SCRIBE_DATABASE_URL)."""

from core.process import main
from store.db import create_pool
from streamer.service import Streamer

if __name__ == "__main__":
    main("streamer", Streamer.open, create_pool)
