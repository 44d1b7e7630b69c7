"""Changing a stored object: the patch flavours and the resourceVersion precondition."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch

from controller.sandbox.kube.resources import Body
from controller.sandbox.kube.wire import api_error

# Strategic-merge keys of the list fields that clients patch in practice (pod templates,
# services, conditions). Lists of dicts that all carry one of these keys merge by it.
MERGE_KEYS = ("name", "containerPort", "port", "mountPath", "devicePath", "type", "ip")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic-merge subset: merge patch, plus lists of keyed dicts merged by their key.

    Directives (``$patch``, ``$setElementOrder/…``, ``$retainKeys``) are dropped, not honoured.
    """
    if isinstance(patch, Mapping):
        result = dict(target) if isinstance(target, Mapping) else {}
        for key, value in patch.items():
            if key.startswith("$"):
                continue
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value)
        return result
    if isinstance(patch, list) and isinstance(target, list):
        key = _merge_key(target, patch)
        if key is not None:
            merged = [dict(item) for item in target]
            for item in patch:
                index = next((i for i, old in enumerate(merged) if old[key] == item[key]), None)
                if item.get("$patch") == "delete":
                    if index is not None:
                        del merged[index]
                elif index is None:
                    merged.append(strategic_merge_patch({}, item))
                else:
                    merged[index] = strategic_merge_patch(merged[index], item)
            return merged
    return copy.deepcopy(patch)


def _merge_key(target: list[Any], patch: list[Any]) -> str | None:
    items = target + patch
    if not items or not all(isinstance(item, Mapping) for item in items):
        return None
    return next((key for key in MERGE_KEYS if all(key in item for item in items)), None)


def apply_patch(current: Body, patch: Any, content_type: str) -> Body:
    """The object after a PATCH of ``content_type``; API errors as kube-apiserver gives them."""
    if content_type == "application/json-patch+json":
        try:
            return dict(jsonpatch.apply_patch(current, patch, in_place=False))
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            # Kopf's optimistic concurrency: a failed `test` op must be 422, not 500.
            raise api_error(422, "Invalid", f"the JSON patch cannot be applied: {e}") from e
    if not isinstance(patch, Mapping):
        raise api_error(400, "BadRequest", "the patch body must be a JSON object")
    check_precondition(current, patch)
    if content_type == "application/merge-patch+json":
        return dict(merge_patch(current, patch))
    if content_type in {
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    }:
        return dict(strategic_merge_patch(current, patch))
    raise api_error(415, "UnsupportedMediaType", f"the patch type {content_type!r} is unknown")


def check_precondition(current: Body, desired: Mapping[str, Any]) -> None:
    """409 Conflict if ``desired`` names a resourceVersion other than the stored one."""
    expected = (desired.get("metadata") or {}).get("resourceVersion")
    if expected and expected != current["metadata"]["resourceVersion"]:
        raise api_error(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on "{current["metadata"]["name"]}": the object '
            "has been modified; please apply your changes to the latest version and try again",
        )
