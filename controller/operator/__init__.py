"""The operator: Kopf handlers, the webhook receiver and metrics (DESIGN §4, §6).

The only package that knows Kopf (and only :mod:`controller.operator.handlers` imports it).
It maps events to :func:`controller.pipeline.reconcile` calls and outcomes to status patches.

Modules, one idea each: ``handlers`` (Kopf: login, daemons, events, delete), ``main`` (the
process: Kopf with the webhook and metrics servers), ``state`` (the running workers, webhook
tokens, clean-up), ``worker`` (one Workspace's loop: when to fetch, run, record), ``shared``
(what the workers share), ``retry`` (backoff bookkeeping), ``requests`` (the requested-at,
re-apply and suspend answers), ``writer`` (the stored-status writer: diff, patch, pending
result), ``stored`` (reading the stored status), ``events`` (what the Events say), ``wiring``
(the runner, in its run slot, and the registry client of a reconcile), ``secrets`` (the spec's
Secrets as private files), ``webhook``, ``metrics``, ``config``; ``leases`` (leader election on
a Lease), ``shards`` (label selectors), ``relay`` (pushes for Workspaces another replica serves).
"""

from controller.operator.config import OperatorConfig
from controller.operator.main import Operator, run_operator

__all__ = ["Operator", "OperatorConfig", "run_operator"]
