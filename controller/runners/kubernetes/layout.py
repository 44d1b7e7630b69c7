"""Where things are in the ``kubernetes`` runner's pod, and its main container's entry script.

The container names, the uid, the mount points and key names the Job and Secret manifests of
:mod:`controller.runners.kubernetes.manifests` lay out, :data:`PATHS` (where the action finds
the workspace, kubeconfig and snapshot) and :data:`RUN_SCRIPT`. Plain values, no I/O; the
layout is written up in docs/kubernetes-runner.md.
"""

from __future__ import annotations

from controller.runners.base import RunPaths

PREPARE = "prepare"
MAIN = "ansible"
RUN_AS = 65532  # the "nonroot" user of distroless images; any non-zero uid works
WORKSPACE_DIR = "/workspace"
HOME_DIR = "/home/cratekeeper"
TMP_DIR = "/tmp"  # noqa: S108 - an emptyDir private to the pod
TOOLS_DIR = "/opt/cratekeeper"
RUN_DIR = "/run/cratekeeper"  # the run's Secret: kubeconfig, snapshot.yml, script.sh (tmpfs)
GIT_AUTH_DIR = "/etc/cratekeeper/git"
KEPT_DIR = "/etc/cratekeeper/kept"  # the run Secret's kept artifacts only, for prepare
KEPT_KEY = "artifacts.tar.gz"
ARTIFACTS_KEY = "artifacts.key"  # the run's random AES-256 key: the main container seals with it
CA_DIR = "/etc/cratekeeper/ca"  # the run Secret's CA bundle only, for prepare
CA_KEY = "ca.crt"
REGISTRY_AUTH_DIR = "/etc/cratekeeper/registry"
EVENTS_FILE = f"{TMP_DIR}/cratekeeper-events.jsonl"
TERMINATION_LOG = "/dev/termination-log"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SCRIPT_FILE = f"{RUN_DIR}/script.sh"
PATHS = RunPaths(
    root=WORKSPACE_DIR, kubeconfig=f"{RUN_DIR}/kubeconfig", snapshot=f"{RUN_DIR}/snapshot.yml"
)
"""Where the action finds the workspace, the kubeconfig and the snapshot in the pod."""

# The main container's entry point. It runs the action, then copies the first failed task, a
# count of the files the action wrote under its block's artifacts folder (so a lost sealed
# block is named), the first changed tasks (drift detection names them), and the last stats
# lines (one per playbook run) of the callback's events into the termination message (the
# kubelet keeps at most 4 KiB, from the end: the last stats line always survives); prints the
# artifacts/blocks/ tree sealed (controller/runners/sealed.py, run with ansible-playbook's own
# Python, which has `cryptography`) for the runner to bring back; and exits with the action's
# code.
# Only sh, grep, head, tail, find, wc, sed, sleep and Ansible's Python are needed, so any
# Ansible execution image will do.
# File mtimes advance in clock ticks of a few milliseconds (a second on some file systems), and
# `find -newer` skips a file written in the same tick as "$start": so the script waits, before
# the action, until a probe written after "$start" is newer than it (at most ~2 s, then it
# goes on: a count that may miss a file beats a run that never starts).
RUN_SCRIPT = """\
start="$CRATEKEEPER_EVENTS_FILE.start"
: > "$start"
tick=0
until : > "$start.tick" && [ "$start.tick" -nt "$start" ] || [ "$tick" -ge 200 ]; do
  sleep 0.01 2>/dev/null || sleep 1
  tick=$((tick + 1))
done
rm -f "$start.tick"
"$@"
rc=$?
{
  if [ -f "$CRATEKEEPER_EVENTS_FILE" ]; then
    grep '"status": "failed"' "$CRATEKEEPER_EVENTS_FILE" | head -n 1
  fi
  if [ -d "$CRATEKEEPER_ARTIFACTS_DIR" ]; then
    n=$(find "$CRATEKEEPER_ARTIFACTS_DIR" -type f -newer "$start" 2>/dev/null | wc -l)
    n=$((n + 0))
    if [ "$n" -gt 0 ]; then echo "{\\"event\\": \\"artifacts\\", \\"written\\": $n}"; fi
  fi
  if [ -f "$CRATEKEEPER_EVENTS_FILE" ]; then
    grep '"changed": true' "$CRATEKEEPER_EVENTS_FILE" | head -n 10
    grep '"event": "stats"' "$CRATEKEEPER_EVENTS_FILE" | tail -n 10
  fi
} > "${CRATEKEEPER_TERMINATION_LOG:-/dev/termination-log}" 2>/dev/null
if [ -f "${CRATEKEEPER_ARTIFACTS_KEY:-}" ] && [ -f "${CRATEKEEPER_SEALER:-}" ]; then
  py=$(sed -n '1s/^#![[:space:]]*//p' "$(command -v ansible-playbook)" 2>/dev/null)
  ${py:-python3} "$CRATEKEEPER_SEALER" || echo "cratekeeper: the artifacts were not sealed" >&2
fi
exit $rc
"""
