# syntax=docker/dockerfile:1
# Both images of cratekeeper, from one base stage (`runtime`) so their common runtime is written
# once (issue 14). Build from the repository root:
#   docker build --target controller -t cratekeeper:dev .
#   docker build --target execution -t cratekeeper-execution:dev .
# `controller` is the last stage, so a plain `docker build .` builds the controller.
#
# controller: `cratekeeper run`, the Kopf operator. Actions run in Jobs of the execution image,
#   so there is no Ansible in it.
# execution: the Ansible execution environment of the kubernetes runner's Jobs (DESIGN §5) and
#   the image of the docker runner: ansible-core, the kubernetes.core collection and its Python
#   client, and cratekeeper itself for the Job's init container (`python -m
#   controller.runners.prepare`: check out the workspace at the commit, pull the block by
#   digest). The runners replace the container's PATH with the default one and mount emptyDirs
#   over /tmp, /home/cratekeeper and /opt/cratekeeper, so everything lives under /usr/local.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# -- build: the sources, and pip settings shared by both installs ------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller

# Installed under a prefix that is copied onto /usr/local of the same base image: scripts land on
# the default PATH, and no pip, setuptools or sources come along.
FROM build AS build-controller
RUN pip install --no-cache-dir --no-compile --prefix=/install .

FROM build AS build-execution
ARG ANSIBLE_CORE_VERSION=2.19.14
ARG KUBERNETES_CORE_VERSION=6.2.0
ARG KUBERNETES_CLIENT_VERSION=37.0.2
ENV PYTHONPATH=/install/lib/python3.11/site-packages
RUN pip install --no-cache-dir --no-compile --prefix=/install \
      "ansible-core==${ANSIBLE_CORE_VERSION}" \
      "kubernetes==${KUBERNETES_CLIENT_VERSION}" \
      . \
 && /install/bin/ansible-galaxy collection install --no-cache \
      -p /install/lib/python3.11/site-packages/ansible_collections \
      "kubernetes.core:==${KUBERNETES_CORE_VERSION}"

# -- runtime: what both images run on ----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# git and ssh fetch workspace repositories (the controller's source step, the Job's checkout);
# nothing else from Debian.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 cratekeeper \
 && useradd --system --uid 65532 --gid 65532 --home-dir /home/cratekeeper --create-home \
      --shell /usr/sbin/nologin cratekeeper
# The chart mounts the root filesystem read-only: /tmp and the caches are emptyDirs there.
ENV HOME=/home/cratekeeper \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532

# -- execution: the image of every Job ---------------------------------------------------------
FROM runtime AS execution
# Ansible finds kubernetes.core in site-packages/ansible_collections (it scans sys.path).
COPY --from=build-execution /install /usr/local
ENV ANSIBLE_NOCOLOR=1
WORKDIR /workspace
CMD ["ansible-playbook", "--version"]

# -- controller: the operator (last, so the default target) ------------------------------------
FROM runtime AS controller
COPY --from=build-controller /install /usr/local
ENV CRATEKEEPER_CACHE_DIR=/var/cache/cratekeeper
WORKDIR /home/cratekeeper
EXPOSE 8080 9000 9090
ENTRYPOINT ["cratekeeper"]
CMD ["run"]
