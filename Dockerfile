# syntax=docker/dockerfile:1.7
# Image of ins-worker: one process, `ins-worker <subcommand>`.
#
#   docker build -t ins-worker:dev .
#   docker run --rm --read-only --tmpfs /tmp ins-worker:dev run
#
# The runtime stage holds CPython, the installed wheels and nothing else:
# no compiler, no pip, no tests, no source tree. It runs as a numeric
# non-root user and writes nowhere but /tmp, so it works with a read-only
# root filesystem and Kubernetes' "restricted" pod security profile.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: wheels for the project and every dependency -----------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Only what the wheel is made of; .dockerignore keeps the rest out anyway.
COPY pyproject.toml README.md ./
COPY worker/ worker/
COPY schemas/ schemas/

# Every dependency the project pins a range for ships manylinux wheels for
# CPython 3.11, so no compiler is needed; `pip wheel` fails loudly if one
# ever does not.
RUN pip wheel --wheel-dir /wheels .

# ---- runtime -------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="ins-worker" \
      org.opencontainers.image.description="INS identity worker (INSi)"

# Numeric ids so that Kubernetes can check runAsNonRoot without a passwd
# lookup; the same ids are used in k8s/base and docker-compose.yml.
ARG APP_UID=10001
ARG APP_GID=10001
RUN groupadd --system --gid "${APP_GID}" insworker \
 && useradd --system --uid "${APP_UID}" --gid "${APP_GID}" \
        --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin insworker

# The wheels are bind-mounted from the build stage, so they never become a
# layer of this image. pip compiles the bytecode now, at build time: at run
# time the root filesystem is read-only. pip, setuptools and wheel are then
# removed: nothing installs anything at run time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels \
        --compile /wheels/ins_worker-*.whl \
 && pip uninstall --yes --no-cache-dir pip setuptools wheel \
 && ins-worker --help > /dev/null

# Set after the install so that pip above still writes the .pyc files.
# TMPDIR is the only writable place (an emptyDir or a tmpfs).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    INS_WORKER_HEALTH_HOST=0.0.0.0

USER ${APP_UID}:${APP_GID}
WORKDIR /tmp

# /metrics, /livez and /readyz (INS_WORKER_HEALTH_PORT).
EXPOSE 8000

# No HEALTHCHECK: Kubernetes ignores it and probes /livez and /readyz
# itself (k8s/base/deployment.yaml); docker-compose.yml declares its own.
# An image-level check would also run for `migrate` and `simulator`, which
# serve no /livez.

# The worker drains on SIGTERM (INS_WORKER_SHUTDOWN_BUDGET_S) and exits 0.
STOPSIGNAL SIGTERM

# Exec form: ins-worker is PID 1 and receives SIGTERM itself. No init
# (tini) is needed for `run`: it installs its own SIGTERM handler and
# starts no child processes, so there is nothing to forward to or reap.
# (`simulator` handles SIGTERM too.) A PID 1 without a handler ignores
# SIGTERM, which only matters for the short-lived `migrate` and `demo`:
# docker-compose.yml sets `init: true`, and the migration Job is bounded by
# its activeDeadlineSeconds.
ENTRYPOINT ["ins-worker"]
CMD ["run"]
