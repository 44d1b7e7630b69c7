"""Telling people: commit statuses on the forge and alerts to chat services and webhooks.

:mod:`~controller.notify.http` is the one HTTP client (one timeout and retry policy);
:mod:`~controller.notify.forges` and :mod:`~controller.notify.alerts` build each service's
documented request (pure); :mod:`~controller.notify.events` says what a recorded reconcile
tells (pure); :mod:`~controller.notify.ratelimit` keeps a retry loop from flooding a channel;
:class:`~controller.notify.notifier.Notifier` sends it all off the reconcile path.
Configuration is ``spec.notify`` of the Workspace and the ``Alert`` objects of its namespace
that select it (:mod:`controller.api.alert`; docs/notifications.md).
"""

from controller.notify.http import Policy
from controller.notify.notifier import Notifier
from controller.notify.ratelimit import RateLimiter

__all__ = ["Notifier", "Policy", "RateLimiter"]
