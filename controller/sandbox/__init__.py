"""A self-contained cluster for ``cratekeeper demo`` and for the tests.

``controller.sandbox.kube`` serves an in-memory Kubernetes API (kmock's emulator, completed);
``controller.sandbox.registry`` starts a local OCI registry. Nothing else in ``controller``
imports this package: it needs the ``demo`` extra (kmock) at run time, the operator does not.
Submodules are not imported here, so ``controller.sandbox.registry`` works without kmock.
"""
