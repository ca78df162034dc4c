"""Ferry's local cluster simulator: a loopback Kubernetes for ``make run`` and for tests.

- :mod:`ferry_kube_sim.server`: the Kubernetes API test server (list, watch, logs).
- :mod:`ferry_kube_sim.objects`: builders of workloads, statuses and pods.
- :mod:`ferry_kube_sim.simulator`: the simulator (plays Flux and the kubelet);
  ``python -m ferry_kube_sim`` runs it.
"""

from ferry_kube_sim.server import RESOURCES, KubeApiServer, NotFound, Resource

__all__ = ["RESOURCES", "KubeApiServer", "NotFound", "Resource"]
