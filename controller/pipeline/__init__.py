"""fetch → parse → plan → pull → run → record, for one workspace, with no Kopf (DESIGN §4).

- :mod:`.reconcile`: one revision on top of a status (the flow, artifacts kept between runs);
- :mod:`.runs`: one planned run, prepared before anything runs, then its request and run;
- :mod:`.removed`: blocks that left the workspace, their ``uninstall`` run as last applied;
- :mod:`.loading`: secrets.poly, and the kept artifacts laid back into an export;
- :mod:`.contract`: the model's half of the runtime contract (snapshot, rendered script).
"""

from controller.pipeline.loading import lay_back, load_secrets
from controller.pipeline.reconcile import (
    PipelineContext,
    Progress,
    previous_revision,
    reconcile,
    ref_label,
    unexpected,
)

__all__ = [
    "PipelineContext",
    "Progress",
    "lay_back",
    "load_secrets",
    "previous_revision",
    "reconcile",
    "ref_label",
    "unexpected",
]
