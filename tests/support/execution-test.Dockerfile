# A test-only execution image for the docker runner's tests (tests/support/docker_engine.py
# builds it offline from a debootstrap'd Debian bookworm base). Not the production image: that
# lives in images/execution/. Same Python (3.11), ansible-core, kubernetes client and
# kubernetes.core collection as the test virtualenv, so the runners are compared like for like.
ARG BASE
FROM ${BASE}
ARG ANSIBLE_CORE_VERSION
ARG KUBERNETES_VERSION
ENV PATH=/opt/ansible/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1
# The host's CA bundle, so pip works behind the same TLS-inspecting proxy as the host does.
COPY ca-certificates.crt /tmp/build-ca.crt
RUN python3 -m venv /opt/ansible \
 && PIP_CERT=/tmp/build-ca.crt /opt/ansible/bin/pip install --no-cache-dir -q \
      --disable-pip-version-check \
      "ansible-core==${ANSIBLE_CORE_VERSION}" "kubernetes==${KUBERNETES_VERSION}" \
 && rm /tmp/build-ca.crt
# Copied from the test virtualenv: Ansible Galaxy need not be reachable.
COPY kubernetes.core /opt/ansible/lib/python3.11/site-packages/ansible_collections/kubernetes/core
USER 65532:65532
WORKDIR /workspace
