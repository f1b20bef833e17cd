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
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# README.md is optional (the glob may match nothing); pyproject.toml names it.
# setup.py builds the C extensions (the decoder's fast path and cost scan, the
# packer, the consumer's readers): without them every result is the same but
# a record costs several times the CPU, so the build needs a compiler for the
# time of the install, and fails if an extension did not build.
COPY pyproject.toml setup.py MANIFEST.in README.md* ./
COPY relay ./relay
COPY consumers ./consumers
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install . \
    && cd / \
    && python -m relay.common.speedups \
    && apt-get purge -y --auto-remove gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* /src

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
