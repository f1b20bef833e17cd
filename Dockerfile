# logrelay image: `logrelay catch` by default.
#
#   docker build -t logrelay .
#   docker run --rm -e LOGRELAY_CATCH_LISTEN=0.0.0.0:9020 \
#       -e LOGRELAY_CATCH_REDIS_URL=redis://redis-host:6379/0 -p 9020:9020 logrelay
#
# Every option comes from the environment as LOGRELAY_<COMMAND>_<OPTION>
# (see `logrelay catch --help`).  The catcher listens on 127.0.0.1:9020 unless
# told otherwise, which inside a container reaches nothing: set
# LOGRELAY_CATCH_LISTEN=0.0.0.0:9020 (compose.yaml does).
#
# Two stages: the builder compiles, the image only installs what it built.
# tests/test_dockerfile.py checks this file (and builds the same wheel locally).

# -- builder: the project's wheel with its C extensions, and every dependency's wheel ------------------------
FROM python:3.11-slim AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# README.md is optional (the glob may match nothing); pyproject.toml names it.
# setup.py builds the C extensions (the decoder's fast path and cost scan, the
# packer, the consumer's readers): without them every result is the same but
# a record costs several times the CPU.
COPY pyproject.toml setup.py MANIFEST.in README.md* ./
COPY relay ./relay
COPY consumers ./consumers
# The project's wheel and every dependency's (hiredis among them: redis[hiredis]),
# built here where a dependency has no wheel for this platform.  The project's
# extensions are optional to setuptools (a laptop without a compiler still
# installs): the speedups check fails the build when one did not build.  It
# runs from / : inside /src, `relay` would be the source tree, not the wheel.
RUN pip wheel --wheel-dir /wheels . \
    && pip install --no-index --find-links /wheels logrelay \
    && cd / \
    && python -m relay.common.speedups

# -- the image: the wheels installed, no compiler ------------------------------------------------------------
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Installed from the builder's wheels alone (--no-index: nothing else is fetched),
# then checked again: the image runs every C extension.
COPY --from=builder /wheels /wheels
RUN pip install --no-index --find-links /wheels logrelay \
    && rm -rf /wheels \
    && python -m relay.common.speedups

RUN useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin logrelay \
    && mkdir -p /var/log/logrelay \
    && chown logrelay:logrelay /var/log/logrelay
# A new named volume mounted here takes this ownership: the consumer can write.
WORKDIR /
USER logrelay:logrelay

# logging.handlers.DEFAULT_TCP_LOGGING_PORT
EXPOSE 9020

# Exec form: logrelay is PID 1 and gets SIGTERM itself, then drains open
# connections (--drain-timeout) and publishes its buffer (--shutdown-timeout)
# before exiting; give it longer than both to stop (compose: stop_grace_period).
ENTRYPOINT ["logrelay"]
CMD ["catch"]
