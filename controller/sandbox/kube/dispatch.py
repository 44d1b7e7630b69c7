"""Choosing a reaction for a request in constant time, and keeping the request logs bounded.

kmock 0.8 decides whether a reaction applies with ``request in reaction_source``, which iterates
every request the handler ever recorded through the reaction's filters: each request costs
time proportional to all requests before it, and the server slows quadratically (it stalled
between 100 and 250 Workspaces). Every reaction also keeps its own list of the requests it
served, forever.

For the views that reactions are made of in practice — the handler itself, criteria filters
(``handler['get /version']``, ``handler[action.LIST]``) and priorities (``.fallback``) — whether
the request being served is "in" the view depends on that request alone, so :func:`sees`
decides it without the log. Views whose membership depends on the history (slices such as
``handler['get'][:1]``, ``|``/``&`` groups, exclusions, streams) keep kmock's check, which sees
the bounded log: they work for requests within it.
"""

from __future__ import annotations

from typing import Any

import aiohttp.web
import kmock
from kmock._internal import rendering  # ReactionMismatchError is not in kmock.__all__

_UNDEFINED = (
    "Undefined server behaviour: no reaction matching the request is defined. "
    "Consider adding a catch-all fallback reaction: `kmock.fallback << 404`."
)


def sees(view: kmock.View, root: kmock.Root, request: kmock.Request) -> bool:
    """Whether ``view`` contains ``request``, the request ``root`` is serving right now."""
    if view is root:
        return True
    if type(view) is kmock.Filter:
        return sees(view._source, root, request) and bool(view.criteria(request))
    if type(view) is kmock.Priority:
        return sees(view._source, root, request)
    return request in view  # history-dependent views: kmock's own (log-scanning) check


def ordered(payloads: list[kmock.Reaction]) -> list[kmock.Reaction]:
    """The reactions by priority, highest first, ties in order of definition (as kmock)."""
    priorities = [payload.priorities for payload in payloads]
    width = max((len(p) for p in priorities), default=0)
    keys = [tuple(-p for p in priority) + (0,) * (width - len(priority)) for priority in priorities]
    return [payloads[i] for i in sorted(range(len(payloads)), key=lambda i: keys[i])]


def trim(log: list[Any], limit: int | None) -> int:
    """Drop the oldest entries of ``log`` beyond ``limit`` (in chunks); how many were dropped.

    Trimming only once the log holds twice the limit keeps the cost per append constant.
    """
    if limit is None or len(log) < 2 * limit + 1:
        return 0
    dropped = len(log) - limit
    del log[:dropped]
    return dropped


async def react(
    root: kmock.Root, request: kmock.Request, *, limit: int | None
) -> aiohttp.web.StreamResponse:
    """Serve ``request`` with the first applicable reaction of ``root`` (kmock's semantics)."""
    for payload in ordered(root._payloads):
        if payload._disabled.is_set() or not sees(payload._source, root, request):
            continue
        trim(payload._requests, limit)  # the reaction's own log, appended to by the call
        try:
            response: aiohttp.web.StreamResponse = await payload(request)
            return response
        except rendering.ReactionMismatchError:  # mismatch or depletion
            payload._disabled.set()
        except NotImplementedError:  # matched, but nothing to respond with
            pass
    raise NotImplementedError(_UNDEFINED)
