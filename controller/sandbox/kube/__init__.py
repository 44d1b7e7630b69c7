"""An in-memory Kubernetes API server: kmock 0.8's ``KubernetesEmulator``, completed.

kmock's emulator is an in-memory object store behind the Kubernetes URL scheme. Out of the box
it is enough for Kopf's own unit tests, but not for real clients (Kopf's full reactor, the
``kubernetes`` client, kubectl, Ansible's ``kubernetes.core``). :class:`ClusterEmulator`
subclasses it and fills the gaps listed in ``docs/testing-emulator.md``: cluster-scoped
``/api/v1/namespaces``, typed lists, server-managed metadata (uid, resourceVersion,
creationTimestamp, generation), generateName, PUT, the patch flavours, status subresources,
finalizers, watch resumption and bookmarks, selectors, Table rendering, CRD registration.
``cratekeeper demo`` runs the operator against it; the tests use it through the fixtures in
``tests/support/kube_emulator.py``.

It runs in a background thread with its own event loop, so sync code (subprocesses such as
``ansible-playbook`` or kubectl) and async code (Kopf in the caller's loop) share one server.

The modules, bottom up: :mod:`.resources` (constants, CRD specs), :mod:`.wire` (URLs,
request parsing, API errors), :mod:`.patches`, :mod:`.selectors` (and JSONPath),
:mod:`.tables`, :mod:`.metadata` (server-managed fields), :mod:`.discovery` (``/version``,
resource lists, what a CRD serves), :mod:`.dispatch` (reactions chosen without replaying the
request log: a request costs the same however many came before); then the handler in three
layers, :mod:`.store` → :mod:`.watch` → :mod:`.cluster`; and :mod:`.server` (the thread and
the handle), :mod:`.recording` (the request log as values).

Fixtures (``tests/support/kube_emulator.py``; listed in ``pytest_plugins`` of the root
conftest)::

    kube_emulator      session  KubeEmulator, started on 127.0.0.1:<free port>, Workspace CRD
                                registered; state is shared: use a namespace per test
    kubeconfig         function Path of a 0600 kubeconfig for ``kube_emulator`` (a dummy token)
    fresh_kube_emulator function  a private KubeEmulator for tests that need an empty cluster

Sync use::

    def test_x(kube_emulator: KubeEmulator, kubeconfig: Path) -> None:
        mark = kube_emulator.mark()
        subprocess.run(["ansible-playbook", ...], env={"KUBECONFIG": str(kubeconfig), ...})
        assert kube_emulator.get("apps/v1/deployments", "web", namespace="demo")
        assert not kube_emulator.writes(since=mark)   # or: only the writes you expect

Async use (any loop: the server lives in its own thread)::

    async def test_y(kube_emulator: KubeEmulator) -> None:
        kube_emulator.create("cratekeeper.dev/v1alpha1/workspaces", {...})
        await kube_emulator.until(lambda: kube_emulator.get(WS, "ws1", namespace="ns")
                                  .get("status"))

Without pytest (the demo)::

    with KubeEmulator(crds=[WORKSPACE_CRD]) as cluster:
        cluster.write_kubeconfig(path)

``KubeEmulator`` (thread-safe; each call hops into the server's loop and returns copies):

- ``url``, ``host``, ``port``; ``write_kubeconfig(path, namespace="default") -> Path``;
  ``connection_info() -> (server, token)`` for ``@kopf.on.login``.
- ``register_crd(CustomResource | Mapping)``: serve a custom resource (a ``CustomResource``
  spec, or a full ``CustomResourceDefinition`` manifest such as ``crds/workspace.yaml``).
  Creating a CRD through the API (kubectl, the client) registers it as well.
- ``create(resource, body)``, ``get(resource, name, namespace=None)``,
  ``list_objects(resource, namespace=None)``, ``history(resource, name, namespace=None)``:
  the stored objects, as the server holds them. ``resource`` is ``"v1/namespaces"``,
  ``"apps/v1/deployments"``, ``"cratekeeper.dev/v1alpha1/workspaces"`` (kmock notation).
- ``requests(since=0)``, ``writes(since=0)``, ``mark()``: the request log as
  :class:`RecordedRequest` values; ``mark()`` is a position to pass as ``since``. The log keeps
  the last ``KubeEmulator(request_log=10_000)`` requests (``None``: all; ``0``: none) and raises
  ``LookupError`` for a position it no longer holds.
- ``errors()``: exceptions raised inside the emulator (bugs, not API errors such as 404).
- ``wait(predicate, timeout=5.0)`` and ``await until(predicate, timeout=5.0)``: poll with a
  bounded deadline; return the first truthy value or raise ``TimeoutError``.
- ``call(fn)``: run ``fn(handler)`` in the server's loop for anything else (kmock's own API:
  ``handler.objects``, reactions such as ``handler['get /version'] << 500``).

Known limits (deliberate): no admission, defaulting, validation against schemas, OpenAPI
(kubectl needs ``--validate=false``), garbage collection by owner references, controllers
(Deployments never become ready), RBAC or authentication (any token is accepted).
"""

from controller.sandbox.kube.cluster import ClusterEmulator
from controller.sandbox.kube.patches import merge_patch, strategic_merge_patch
from controller.sandbox.kube.recording import RecordedRequest
from controller.sandbox.kube.resources import (
    ALERT_CRD,
    ALERTS,
    DUMMY_TOKEN,
    WORKSPACE_CRD,
    WORKSPACES,
    Body,
    CustomResource,
    PrinterColumn,
)
from controller.sandbox.kube.selectors import Selection, field_matcher, jsonpath, label_matcher
from controller.sandbox.kube.server import KubeEmulator
from controller.sandbox.kube.wire import ApiPath, api_error, parse_api_path

__all__ = [
    "ALERTS",
    "ALERT_CRD",
    "DUMMY_TOKEN",
    "WORKSPACES",
    "WORKSPACE_CRD",
    "ApiPath",
    "Body",
    "ClusterEmulator",
    "CustomResource",
    "KubeEmulator",
    "PrinterColumn",
    "RecordedRequest",
    "Selection",
    "api_error",
    "field_matcher",
    "jsonpath",
    "label_matcher",
    "merge_patch",
    "parse_api_path",
    "strategic_merge_patch",
]
