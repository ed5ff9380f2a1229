# CantoneseScribe: one image for every service.
#
# Default command: the gateway (REST on 0.0.0.0:8000). compose.yaml runs the same image as
# `python -m streamer`, `python -m transcriber`, `python -m romanizer`; the `scribe` CLI
# is on PATH too (`docker run --rm IMAGE scribe --help`).
#
# NOTE: never built here: the development and CI machines have a Docker client but no
# Docker engine, so `docker build` cannot run. compose.yaml is checked offline by
# tests/integration/test_compose.py (`docker-compose config`); build and smoke-test this image
# on a machine with an engine before relying on it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first, in their own layer: a code change does not reinstall them. Empty
# stand-ins for the project's packages (romanizer.build is romanizer/build) let pip
# resolve pyproject.toml alone.
COPY pyproject.toml /tmp/deps/
RUN cd /tmp/deps \
 && for pkg in $(python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['tool']['setuptools']['packages'])"); do \
        dir=$(echo "$pkg" | tr . /) && mkdir -p "$dir" && touch "$dir/__init__.py"; \
    done \
 && pip install . \
 && pip uninstall -y cantonesescribe \
 && rm -rf /tmp/deps

# The project itself; the files it needs at run time (migrations, lexicon, the NATS server
# configuration of the embedded launcher) are package data and go with the install.
WORKDIR /app
COPY . /app
RUN pip install --no-deps . && rm -rf build ./*.egg-info

# Non-root user; its data dir (model cache) is a volume.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/scribe scribe \
 && mkdir -p /data \
 && chown scribe:scribe /data
ENV SCRIBE_DATA_DIR=/data \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/data/huggingface
VOLUME ["/data"]
USER scribe

EXPOSE 8000
CMD ["python", "-m", "gateway"]
