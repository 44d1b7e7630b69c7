"""The operator: Kopf handlers, the webhook receiver and metrics (DESIGN §4, §6).

The only package that knows Kopf (and only :mod:`controller.operator.handlers` imports it).
It maps events to :func:`controller.pipeline.reconcile` calls and outcomes to status patches;
everything it decides is in :mod:`controller.operator.worker`.
"""

from controller.operator.config import OperatorConfig
from controller.operator.main import Operator, run_operator

__all__ = ["Operator", "OperatorConfig", "run_operator"]
