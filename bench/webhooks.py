"""Webhook latencies of the scale benchmark (issue 11 point 7), each row naming what it times.

After a push and its signed webhook, three moments are told apart:

- **check started**: the operator's first git process for that repository (the git wrapper's
  log), i.e. the push was seen and its check began;
- **queued**: ``Reconciling=True``, reason ``Queued``, naming the commit: checked, planned,
  pulled, and waiting for a run slot (what the worker writes when every slot is taken);
- **run started**: ``Reconciling=True``, reason ``Progressing``, naming the commit: the run
  holds a slot and has begun.

With free slots each sample waits for its run to be applied before the next push, so no slot
is taken by the previous sample. With every slot busy, the slow block's runs
(``fixture.HOLD`` seconds each) hold the slots, and a sample counts only if all of them still
held their slot after it was taken.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import statistics
import time
from collections import Counter
from typing import Any

import requests
from fixture import HOLD, Fixture

from controller.sandbox.kube import WORKSPACES

SLOTS = 4  # CRATEKEEPER_MAX_CONCURRENT_RUNS (the default)
TOKEN = "bench-webhook-token"  # noqa: S105 -- a throwaway token for a loopback webhook
MARGIN = 15.0  # seconds before the first slow run ends: no new busy sample after that


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conds if c.get("type") == kind), {})


def send(port: int, namespace: str, name: str) -> float:
    """A signed push webhook for ``namespace/name``; when it was sent (epoch seconds)."""
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    signature = hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
    sent = time.time()
    answer = requests.post(
        f"http://127.0.0.1:{port}/hook/{namespace}/{name}",
        data=body,
        headers={"X-Hub-Signature-256": f"sha256={signature}"},
        timeout=10,
    )
    if answer.status_code != 202:
        raise RuntimeError(f"webhook for {namespace}/{name}: HTTP {answer.status_code}")
    return sent


def reconciling(
    fx: Fixture, namespace: str, name: str, sha: str, limit: float, reason: str | None = None
) -> tuple[float, str] | None:
    """When ``Reconciling=True`` naming ``sha`` (with ``reason``, if given) was seen (epoch
    seconds) and its reason; None if not within ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        cond = condition(fx.api.get(WORKSPACES, name, namespace=namespace), "Reconciling")
        names = cond.get("status") == "True" and sha[:12] in cond.get("message", "")
        if names and (reason is None or cond.get("reason") == reason):
            return time.time(), str(cond.get("reason"))
        time.sleep(0.02)
    return None


def holding(fx: Fixture, namespace: str, name: str, sha: str) -> bool:
    """Whether ``name``'s run of ``sha`` is still in progress (it holds a run slot)."""
    cond = condition(fx.api.get(WORKSPACES, name, namespace=namespace), "Reconciling")
    return cond.get("reason") == "Progressing" and sha[:12] in cond.get("message", "")


def applied(fx: Fixture, namespace: str, name: str, sha: str, limit: float) -> bool:
    """Wait until ``sha`` is ``name``'s applied revision and its reconcile has ended."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        obj = fx.api.get(WORKSPACES, name, namespace=namespace) or {}
        done = condition(obj, "Reconciling").get("status") != "True"
        if done and (obj.get("status") or {}).get("lastAppliedRevision") == sha:
            return True
        time.sleep(0.1)
    return False


def queued_first(fx: Fixture, namespace: str, name: str, sha: str) -> bool:
    """Whether any stored version of ``name`` said that ``sha`` waited for a run slot."""
    for version in fx.api.history(WORKSPACES, name, namespace=namespace):
        cond = condition(version, "Reconciling")
        if cond.get("reason") == "Queued" and sha[:12] in cond.get("message", ""):
            return True
    return False


def checked(fx: Fixture, repo: str, after: float, limit: float) -> float | None:
    """When the operator's first git process for ``repo`` after ``after`` started."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for when, args in fx.git_calls():
            if when >= after and f"/{repo} " in f"{args} ":
                return when
        time.sleep(0.05)
    return None


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "n/a"
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.2f} s, p95 {p95:.2f} s (n={len(ordered)})"


def free_slots(
    fx: Fixture, port: int, namespace: str, repos: list[str], label: str
) -> list[list[str]]:
    """Webhook → run started, one push at a time, every run slot free."""
    samples, queued = [], 0
    for i, repo in enumerate(repos):
        sha = fx.push(repo, "noop", i + 1)
        sent = send(port, namespace, repo)
        seen = reconciling(fx, namespace, repo, sha, 60, "Progressing")
        if seen is not None:
            samples.append(seen[0] - sent)
        applied(fx, namespace, repo, sha, 120)  # the next push finds every slot free again
        queued += queued_first(fx, namespace, repo, sha)
    return [
        [
            f"{label}: webhook → run started (`Reconciling=True`, reason `Progressing`),"
            " free run slots",
            f"{percentiles(samples)}; {queued} of {len(repos)} queued first",
        ]
    ]


def busy_slots(
    fx: Fixture, port: int, namespace: str, busy: list[str], others: list[str], label: str
) -> list[list[str]]:
    """With ``busy``'s slow runs holding every run slot: webhook → check started and webhook
    → queued for pushes to ``others``, and the reason each push was given."""
    slow = {repo: fx.push(repo, "slow", 100) for repo in busy}
    for repo in busy:
        send(port, namespace, repo)
    starts = [reconciling(fx, namespace, r, slow[r], 60, "Progressing") for r in busy]
    if any(s is None for s in starts):
        return [[f"{label}: every run slot busy", "n/a: not every slow run started within 60 s"]]
    first_end = min(s[0] for s in starts if s is not None) + HOLD
    checks, queues, reasons = [], [], Counter[str]()
    sampled, late = [], 0
    for i, repo in enumerate(others):
        if time.time() > first_end - MARGIN:
            late = len(others) - i
            break
        sha = fx.push(repo, "noop", 200 + i)
        sent = send(port, namespace, repo)
        # Queued first, then its check (which came before it) from the git log: an interval
        # check that began just before the webhook found the push, so no git process follows it.
        seen = reconciling(fx, namespace, repo, sha, 20)
        check = checked(fx, repo, sent, 1 if seen else 20)
        sampled.append((repo, sha))
        if not all(holding(fx, namespace, r, slow[r]) for r in busy):
            late = len(others) - i  # a slot may have come free before this sample
            break
        reasons[seen[1] if seen else "not seen within 20 s"] += 1
        if check is not None:
            checks.append(check - sent)
        if seen is not None and seen[1] == "Queued":
            queues.append(seen[0] - sent)
    ran = sum(applied(fx, namespace, r, s, HOLD + 120) for r, s in sampled)
    slow_ran = sum(applied(fx, namespace, r, s, 120) for r, s in slow.items())
    held = f"while the {SLOTS} slow runs ({HOLD:.0f} s each) held every slot"
    dropped = f"; {late} not sampled: too close to the slots' release" if late else ""
    told = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
    return [
        [
            f"{label}: webhook → check started (its first git process), every run slot busy",
            percentiles(checks),
        ],
        [
            f"{label}: webhook → push queued (`Reconciling=True`, reason `Queued`, naming the"
            " commit), every run slot busy",
            percentiles(queues),
        ],
        [
            f"{label}: the reason given, every run slot busy",
            f"{told or 'no sample'} of {sum(reasons.values())}, each taken {held}{dropped};"
            f" applied after the slots freed: {ran}/{len(sampled)}"
            f" (and the slow runs {slow_ran}/{len(slow)})",
        ],
    ]
