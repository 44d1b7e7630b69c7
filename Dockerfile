# syntax=docker/dockerfile:1
# The cratekeeper controller: `cratekeeper run`, the Kopf operator. Actions run in Jobs of the
# execution image (images/execution/Dockerfile), so there is no Ansible in this one.
#   docker build -t cratekeeper:dev .

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
# Installed under a prefix that is copied onto /usr/local of the same base image: scripts land on
# the default PATH, and no pip, setuptools or sources come along.
RUN pip install --no-cache-dir --no-compile --prefix=/install .

FROM ${PYTHON_IMAGE}
# git and ssh fetch workspace repositories (the source step shells out to git).
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 cratekeeper \
 && useradd --system --uid 65532 --gid 65532 --home-dir /home/cratekeeper --create-home \
      --shell /usr/sbin/nologin cratekeeper
COPY --from=build /install /usr/local
# The chart mounts the root filesystem read-only: /tmp and the cache are emptyDirs there.
ENV HOME=/home/cratekeeper \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CRATEKEEPER_CACHE_DIR=/var/cache/cratekeeper
USER 65532:65532
WORKDIR /home/cratekeeper
EXPOSE 8080 9000 9090
ENTRYPOINT ["cratekeeper"]
CMD ["run"]
