"""A loopback Kubernetes for tests and for ``make run``.

- :mod:`ferry_testing.kube.server`: the API test server (list, watch, logs).
- :mod:`ferry_testing.kube.objects`: builders of workloads, statuses and pods.
- :mod:`ferry_testing.kube.simulator`: the local cluster simulator (plays Flux and the kubelet).
"""

from ferry_testing.kube.server import RESOURCES, KubeApiServer, NotFound, Resource

__all__ = ["RESOURCES", "KubeApiServer", "NotFound", "Resource"]
