# beacon-router container image.
#   docker build -t beacon-router .
#   docker run -p 8080:8080 -v beacon-data:/data -e BEACON_HASH_KEY=$(openssl rand -hex 32) beacon-router
# The shipped config (config/router.yaml) needs no other service: SQLite spool and store under
# /data. docs/deploy.md covers compose, Kubernetes and systemd.

# The base image is pinned by version (patch and Debian release), so a rebuild gets the same
# Python; bump it on purpose, with the constraints.

# -- build: one wheel for every dependency, then one for the router, so the runtime stage
#    installs offline and carries no compiler, no pip cache and no source tree.
FROM python:3.11.14-slim-bookworm AS build
# A C compiler and OpenSSL's headers for router/_speedups.c and router/_hmac.c (setup.py), in
# this stage only: the runtime stage gets the compiled wheel (and has libcrypto, as Python does).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# 1. Dependency wheels from pyproject.toml and constraints.txt alone: this layer is rebuilt when
#    the dependencies change, not when the code does. (A stub package lets pip read the
#    project's dependencies; its own empty wheel is thrown away.)
COPY pyproject.toml constraints.txt ./
RUN mkdir router && touch router/__init__.py README.md LICENSE \
    && pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt ".[fast,postgres,redis]" \
    && rm /wheels/beacon_router-*.whl && rm -r router README.md LICENSE
# 2. The router's own wheel, without touching the dependencies.
COPY README.md LICENSE setup.py ./
COPY router ./router
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# -- runtime
FROM python:3.11.14-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BEACON_LISTEN=0.0.0.0:8080
RUN groupadd --system --gid 10001 beacon \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home beacon
COPY --from=build /wheels /wheels
COPY --from=build /src/constraints.txt /wheels/
# The image runs every shipped setup: SQLite, and PostgreSQL and Redis of deploy/.
RUN pip install --no-cache-dir --no-index --find-links /wheels -c /wheels/constraints.txt \
        "beacon-router[fast,postgres,redis]" \
    && rm -rf /wheels
# The shipped config uses paths relative to the working directory (config/schemas/...,
# ./data/...): /app holds the config and /app/data points at the /data volume.
WORKDIR /app
COPY config ./config
RUN mkdir /data && chown beacon:beacon /data && ln -s /data /app/data
VOLUME /data
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
# SIGTERM (docker stop) drains: /readyz fails, requests finish, sends in flight complete.
STOPSIGNAL SIGTERM
CMD ["beacon-router", "serve", "--config", "config/router.yaml"]
