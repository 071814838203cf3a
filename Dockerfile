# One Talent Nest node. Built from the repository root, as the seed says:
#   docker build -t backend-tn:latest .
# and run with only the seed's three variables (SERVICE_NAME, JWT_SECRET, PORT); see README.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# tini as PID 1: forwards docker stop's SIGTERM to the node at once and reaps children; -e 143
# reports the node's graceful exit on SIGTERM (128+15) as a clean exit 0.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid 10001 talentnest \
 && useradd --system --no-log-init --uid 10001 --gid talentnest --home-dir /data --no-create-home --shell /usr/sbin/nologin talentnest

WORKDIR /build

# Dependencies first, exactly the locked runtime versions that CI tested, each checked against its
# sha256 (requirements-runtime.lock, made by .ci/lock): a change to the source reuses this layer.
COPY requirements-runtime.lock ./
RUN pip install --require-hashes --no-deps -r requirements-runtime.lock \
 && rm requirements-runtime.lock

# Then the package itself, without touching the dependencies again.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps . \
 && cd / && rm -rf /build \
 && talentnest --version

# The database lives in /data, owned by the node's user. TMPDIR points there too, so that a
# container run with --read-only needs nothing writable but /data (and temporary files land on
# the same filesystem as the database, where a rename is atomic).
RUN mkdir -p /data && chown talentnest:talentnest /data && chmod 0750 /data
ENV DATA_DIR=/data \
    TMPDIR=/data
VOLUME ["/data"]
WORKDIR /data

USER 10001:10001
EXPOSE 3000

# Alive means /healthz answers 2xx on the node's own port; python's urllib, so no curl in the image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)" || exit 1

ENTRYPOINT ["tini", "-e", "143", "--"]
CMD ["talentnest", "node"]
