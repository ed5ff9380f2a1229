"""`python -m gateway`: serve the HTTP API on SCRIBE_GATEWAY_HOST:SCRIBE_GATEWAY_PORT (127.0.0.1:8000).

It needs SCRIBE_NATS_URL and SCRIBE_DATABASE_URL, like every service started on its own.
"""

import sys

import uvicorn

from core import logs
from core.settings import Settings
from gateway.app import create_app


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
    uvicorn.run(create_app(settings), host=settings.gateway_host, port=settings.gateway_port, log_config=None)


if __name__ == "__main__":
    main()
