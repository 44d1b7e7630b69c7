"""Reading a finished (or stuck) Job's pod: the main container's result and its log tail.

:func:`read_result` finds the run's pod by its ``cratekeeper.dev/job`` label and returns the
main container's exit code and termination message (the ``cratekeeper_events`` lines) and the
run's sealed artifacts block; the log's last lines go, redacted, into the run's
:class:`~controller.runners.output.LogTail`, and what cannot be read becomes a note.
:class:`~controller.runners.kubernetes.runner.KubernetesRunner` calls it after following a Job.
"""

from __future__ import annotations

from datetime import UTC, datetime

from controller.errors import KubeError
from controller.kube import Kube, Pod
from controller.runners.kubernetes.layout import MAIN, PREPARE
from controller.runners.kubernetes.names import LABEL_JOB
from controller.runners.output import LOG_TAIL_LINES, LogTail
from controller.runners.sealed import split_log


async def read_result(
    kube: Kube, namespace: str, name: str, tail: LogTail, notes: list[str]
) -> tuple[int | None, str, str | None]:
    """The main container's exit code, termination message and sealed artifacts; its log
    goes to ``tail``."""
    try:
        pods = await kube.list_pods(namespace, {LABEL_JOB: name})
    except KubeError as exc:
        notes.append(f"cratekeeper: cannot read the pod of Job {name}: {exc}")
        return None, "", None
    if not pods:
        notes.append(f"cratekeeper: Job {name} has no pod (not scheduled, or already removed)")
        return None, "", None
    pod = max(pods, key=lambda p: (p.created or datetime.min.replace(tzinfo=UTC), p.name))
    prepare, main = pod.container(PREPARE), pod.container(MAIN)
    if prepare is not None and prepare.state == "terminated" and prepare.exit_code != 0:
        await _read_log(kube, namespace, pod, PREPARE, tail, notes)
        why = prepare.message.strip() or prepare.reason or f"exit code {prepare.exit_code}"
        notes.append(f"cratekeeper: preparing the workspace failed: {why}")
        return None, "", None
    if main is None or main.state in ("waiting", "unknown"):
        for state in (prepare, main):
            if state is not None and state.state == "waiting" and state.reason:
                notes.append(
                    f"cratekeeper: container {state.name} is waiting: {state.reason}"
                    + (f": {state.message}" if state.message else "")
                )
        return None, "", None
    sealed = await _read_log(kube, namespace, pod, MAIN, tail, notes, run_id=name)
    if main.state != "terminated":
        return None, "", None
    return main.exit_code, main.message, sealed


async def _read_log(
    kube: Kube,
    namespace: str,
    pod: Pod,
    container: str,
    tail: LogTail,
    notes: list[str],
    *,
    run_id: str = "",
) -> str | None:
    """The log's last lines into ``tail``, sealed blocks left out; ``run_id``'s sealed block
    (for it the whole log is read: the block is last, and longer than the tail)."""
    try:
        log = await kube.read_pod_log(
            namespace,
            pod.name,
            container=container,
            tail_lines=None if run_id else LOG_TAIL_LINES,
        )
    except KubeError as exc:
        log, reason = None, f": {exc}"
    else:
        reason = ""
    if log is None:
        notes.append(f"cratekeeper: the log of {pod.name}/{container} is not available{reason}")
        return None
    lines, sealed = split_log(log, run_id or None)
    for line in lines[-LOG_TAIL_LINES:]:
        tail.add(line)
    return sealed
