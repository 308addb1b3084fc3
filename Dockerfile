# beacon-router container image.
#   docker build -t beacon-router .
#   docker run -p 8080:8080 -v beacon-data:/data -e BEACON_HASH_KEY=$(openssl rand -hex 32) beacon-router
# The shipped config (config/router.yaml) needs no other service: SQLite spool and store under
# /data. docs/deploy.md covers compose, Kubernetes and systemd.

# -- build: one wheel for the router and one for every dependency, so the runtime stage installs
#    offline and carries no compiler, no pip cache and no source tree.
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip
COPY pyproject.toml README.md ./
COPY router ./router
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[fast]"

# -- runtime
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BEACON_LISTEN=0.0.0.0:8080
RUN groupadd --system --gid 10001 beacon \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home beacon
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "beacon-router[fast]" \
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
