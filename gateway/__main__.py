"""`python -m gateway`: serve the HTTP API on SCRIBE_GATEWAY_HOST:SCRIBE_GATEWAY_PORT (127.0.0.1:8000).

It needs SCRIBE_NATS_URL and SCRIBE_DATABASE_URL, like every service started on its own. SIGTERM
and SIGINT stop it after the requests in hand.
"""

import asyncio
import logging
import signal
import sys

from core import logs
from core.settings import Settings, is_loopback
from gateway import server
from gateway.app import create_app


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = create_app(settings)
    await server.serve(app, settings, host=settings.gateway_host, port=settings.gateway_port, stop=stop)


def main() -> None:
    settings = Settings.for_program("python -m gateway")
    if not settings.nats_url or not settings.database_url:
        print(
            "gateway: set SCRIBE_NATS_URL and SCRIBE_DATABASE_URL: the gateway submits jobs on the NATS and "
            "reads them from the PostgreSQL the services share",
            file=sys.stderr,
        )
        raise SystemExit(2)
    logs.configure(settings.log_level, settings.log_format)
    if settings.auth == "none" and not is_loopback(settings.gateway_host):
        logging.getLogger("gateway").warning(
            "the gateway listens on %s without accounts (SCRIBE_AUTH=none): anyone who can reach it may use it; "
            "set SCRIBE_AUTH=keys",
            settings.gateway_host,
        )
    server.raise_open_files_limit()
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
