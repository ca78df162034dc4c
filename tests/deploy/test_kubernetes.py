"""deploy/k8s rendered with `kubectl kustomize`, every overlay, checked object by object.

- Every built-in object validates offline against the Kubernetes 1.32 schemas in strict mode
  (kubernetes-validate); the custom resources (RabbitmqCluster, Flux GitRepository and
  Kustomization, PrometheusRule, PodMonitor) have no schema there, so their required fields
  are checked here.
- No container runs as root or can escalate; every Deployment has probes and resources, a
  PodDisruptionBudget, and a HorizontalPodAutoscaler exactly where scaling helps.
- The RBAC of each ServiceAccount is exactly issue 7's: the cluster-watcher's ClusterRole is
  get/list/watch on workloads and pods plus get on pods/log; nobody else has any permission
  or a mounted token.
- Only promotion's API and insights' port are reachable from outside the namespace (plus
  machine-to-machine rules listed here: metrics scraping, the RabbitMQ operator, remote
  watchers in production).
- Secrets are referenced by name, never inlined.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from ferry_runtime import metrics

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("local", "production", "cluster-dev-eu", "cluster-prod-eu")
RENDERED = ("base", "base/core", "base/watcher", *(f"overlays/{o}" for o in OVERLAYS))
K8S_VERSION = "1.32.0"

PORTS = {
    "promotion": 8080,
    "artifact-ingest": 8081,
    "git-writer": 8082,
    "cluster-watcher": 8083,
    "notifier": 8084,
    "insights": 8085,
}
SCALED_OUT = {"artifact-ingest", "promotion", "notifier", "insights"}
WATCHER_RULES = {
    *(
        ("apps", r, v)
        for r in ("deployments", "statefulsets", "daemonsets", "replicasets")
        for v in ("get", "list", "watch")
    ),
    *(("batch", "jobs", v) for v in ("get", "list", "watch")),
    *(("", "pods", v) for v in ("get", "list", "watch")),
    ("", "pods/log", "get"),
}
FLUX_APPLIER = "ferry-flux-applier"
CUSTOM_KINDS = {"RabbitmqCluster", "GitRepository", "Kustomization", "PrometheusRule", "PodMonitor"}


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl is not installed; `.ci/run` installs Debian's kubectl "
            "(apt-get install kubectl), which renders the Kustomize overlays"
        )
    return path


_CACHE: dict[str, list[dict[str, Any]]] = {}


def render(target: str) -> list[dict[str, Any]]:
    if target not in _CACHE:
        done = subprocess.run(
            [_kubectl(), "kustomize", str(K8S / target)],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"kubectl kustomize {target} failed:\n{done.stderr}"
        _CACHE[target] = [d for d in yaml.safe_load_all(done.stdout) if d]
    return copy.deepcopy(_CACHE[target])  # tests may change what they get


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def by_name(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in of_kind(objects, kind)}


def containers(deployment: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


# ---------------------------------------------------------------------- schema


@pytest.mark.parametrize("target", RENDERED)
def test_every_object_validates_offline(target: str) -> None:
    objects = render(target)
    assert objects
    checked = 0
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            check_custom_resource(obj)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        checked += 1
    assert checked == len(objects)


def test_the_validator_refuses_an_unknown_field() -> None:
    deployment = of_kind(render("base"), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pth"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def check_custom_resource(obj: dict[str, Any]) -> None:
    kind, spec, meta = obj["kind"], obj["spec"], obj["metadata"]
    assert meta["name"]
    if kind == "RabbitmqCluster":
        assert obj["apiVersion"] == "rabbitmq.com/v1beta1"
        assert isinstance(spec["replicas"], int)
        assert spec["replicas"] >= 1
        assert "load_definitions" in spec["rabbitmq"]["additionalConfig"]
    elif kind == "GitRepository":
        assert obj["apiVersion"] == "source.toolkit.fluxcd.io/v1"
        assert meta["namespace"] == "flux-system"
        assert spec["url"].startswith(("ssh://", "https://"))
        assert re.fullmatch(r"\d+[smh]", spec["interval"])
        assert spec["ref"]["branch"] == "main"
        assert spec["secretRef"]["name"]
    elif kind == "Kustomization":
        assert obj["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
        assert meta["namespace"] == "flux-system"
        assert re.fullmatch(r"\d+[smh]", spec["interval"])
        assert isinstance(spec["prune"], bool)
        assert spec["sourceRef"]["kind"] == "GitRepository"
        # one Kustomization per environment and namespace, applied into that namespace as
        # the applier, which has namespace rights only
        found = re.fullmatch(r"\./environments/[a-z0-9-]+/([a-z0-9-]+)", spec["path"])
        assert found, spec["path"]
        assert spec["targetNamespace"] == found.group(1)
        assert spec["serviceAccountName"] == FLUX_APPLIER
    elif kind == "PrometheusRule":
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        for group in spec["groups"]:
            assert group["name"]
            for rule in group["rules"]:
                assert rule["alert"]
                assert rule["expr"]
                assert rule["labels"]["severity"] in {"warning", "critical"}
                assert rule["annotations"]["summary"]
                assert rule["annotations"]["description"]
    elif kind == "PodMonitor":
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert spec["selector"]["matchLabels"]
        assert all(e["port"] and e["path"] == "/metrics" for e in spec["podMetricsEndpoints"])
    else:  # pragma: no cover - CUSTOM_KINDS lists exactly the kinds above
        raise AssertionError(kind)


# ---------------------------------------------------------------------- workloads


@pytest.mark.parametrize("target", RENDERED)
def test_no_container_runs_as_root_or_escalates(target: str) -> None:
    for deployment in of_kind(render(target), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in containers(deployment):
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, container["name"]
            assert security.get("runAsUser", pod["securityContext"]["runAsUser"]) != 0
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]
            assert not security.get("privileged", False)
            # The read-only root needs writable scratch space: /data and /tmp are emptyDirs.
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            for path in ("/data", "/tmp"):
                assert "emptyDir" in volumes[mounts[path]]


@pytest.mark.parametrize("target", RENDERED)
def test_every_deployment_has_probes_resources_and_its_port(target: str) -> None:
    deployments = of_kind(render(target), "Deployment")
    assert deployments
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"].startswith(f"ferry/{name}:")
        assert container["ports"] == [
            {"name": "http", "containerPort": PORTS[name], "protocol": "TCP"}
        ]
        env = {e["name"]: e for e in container["env"]}
        assert env["FERRY_HTTP_PORT"]["value"] == str(PORTS[name])
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]


@pytest.mark.parametrize("target", RENDERED)
def test_disruption_budgets_and_autoscalers_where_scaling_helps(target: str) -> None:
    objects = render(target)
    deployments = by_name(objects, "Deployment")
    budgets = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for p in of_kind(objects, "PodDisruptionBudget")
    }
    assert budgets == set(deployments)
    autoscaled = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")
    }
    assert autoscaled == SCALED_OUT & set(deployments)
    if "git-writer" in deployments:  # an active consumer and a hot standby, never more
        assert deployments["git-writer"]["spec"]["replicas"] == 2
    if "cluster-watcher" in deployments:
        assert deployments["cluster-watcher"]["spec"]["replicas"] == 1


@pytest.mark.parametrize("overlay", ["cluster-dev-eu", "cluster-prod-eu"])
def test_a_cluster_overlay_deploys_only_the_watcher_named_after_its_cluster(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    (deployment,) = of_kind(objects, "Deployment")
    assert deployment["metadata"]["name"] == "cluster-watcher"
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["FERRY_CLUSTER_NAME"] == overlay.removeprefix("cluster-")
    assert not of_kind(objects, "RabbitmqCluster")
    # Ferry's own, and the application namespaces onboarded to this cluster (flux/tenants)
    assert [n["metadata"]["name"] for n in of_kind(objects, "Namespace")] == ["ferry", "payments"]


# ---------------------------------------------------------------------- RBAC


def permissions(objects: list[dict[str, Any]]) -> dict[str, set[tuple[str, str, str]]]:
    """ServiceAccount name -> every (apiGroup, resource, verb) its bindings grant."""
    roles = {
        (o["kind"], o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in {"Role", "ClusterRole"}
    }
    granted: dict[str, set[tuple[str, str, str]]] = {
        sa["metadata"]["name"]: set()
        for sa in of_kind(objects, "ServiceAccount")
        if sa["metadata"]["name"] != FLUX_APPLIER
    }
    for binding in objects:
        if binding["kind"] not in {"RoleBinding", "ClusterRoleBinding"}:
            continue
        if binding["roleRef"]["name"] == FLUX_APPLIER:  # Flux's, checked on its own below
            continue
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount", "only ServiceAccounts are bound"
            assert subject["namespace"] == "ferry"
            for rule in role["rules"]:
                assert "resourceNames" not in rule
                assert "nonResourceURLs" not in rule
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            granted[subject["name"]].add((group, resource, verb))
    return granted


@pytest.mark.parametrize("target", RENDERED)
def test_rbac_is_exactly_the_watchers_read_only_role(target: str) -> None:
    objects = render(target)
    granted = permissions(objects)
    deployments = by_name(objects, "Deployment")
    assert set(granted) == set(deployments)
    for account, rules in granted.items():
        pod = deployments[account]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account
        if account == "cluster-watcher":
            assert rules == WATCHER_RULES
            assert pod["automountServiceAccountToken"] is True
        else:
            assert rules == set(), account
            assert pod["automountServiceAccountToken"] is False
            sa = by_name(objects, "ServiceAccount")[account]
            assert sa["automountServiceAccountToken"] is False
    # No namespaced Role and no other ClusterRole exists at all (Flux's applier aside).
    assert not of_kind(objects, "Role")
    assert sorted(r["metadata"]["name"] for r in of_kind(objects, "ClusterRole")) == sorted(
        (["ferry-cluster-watcher"] if "cluster-watcher" in deployments else [])
        + ([FLUX_APPLIER] if of_kind(objects, "Kustomization") else [])
    )


#: What Flux's applier may manage: namespaced kinds only; no RBAC, no namespaces.
NAMESPACED = {
    "": {"configmaps", "secrets", "services", "serviceaccounts", "persistentvolumeclaims"},
    "apps": {"deployments", "statefulsets", "daemonsets"},
    "batch": {"jobs", "cronjobs"},
    "autoscaling": {"horizontalpodautoscalers"},
    "policy": {"poddisruptionbudgets"},
    "networking.k8s.io": {"ingresses", "networkpolicies"},
}


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "production"])
def test_flux_applies_as_an_account_with_namespace_rights_only(overlay: str) -> None:
    """A ClusterRoleBinding in a build would be applied with Flux's own (cluster-admin)
    rights; applied as ferry-flux-applier it is refused by the API server, as is an object of
    any cluster-scoped kind or for a namespace nobody onboarded."""
    objects = render(f"overlays/{overlay}")
    (account,) = (
        sa for sa in of_kind(objects, "ServiceAccount") if sa["metadata"]["name"] == FLUX_APPLIER
    )
    assert account["metadata"]["namespace"] == "flux-system"
    assert account["automountServiceAccountToken"] is False
    role = by_name(objects, "ClusterRole")[FLUX_APPLIER]
    for rule in role["rules"]:
        assert "resourceNames" not in rule
        assert "nonResourceURLs" not in rule
        assert set(rule["verbs"]) <= {"get", "list", "watch", "create", "update", "patch", "delete"}
        for group in rule["apiGroups"]:
            assert set(rule["resources"]) <= NAMESPACED.get(group, set()), (group, rule)
    bindings = [
        b
        for b in objects
        if b["kind"] in {"RoleBinding", "ClusterRoleBinding"}
        and any(s["name"] == FLUX_APPLIER for s in b["subjects"])
    ]
    assert bindings
    onboarded = set()
    for binding in bindings:
        assert binding["kind"] == "RoleBinding", "no cluster-wide grant to Flux's applier"
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": FLUX_APPLIER,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FLUX_APPLIER, "namespace": "flux-system"}
        ]
        onboarded.add(binding["metadata"]["namespace"])
    targets = {k["spec"]["targetNamespace"] for k in of_kind(objects, "Kustomization")}
    assert targets == onboarded
    assert targets <= set(by_name(objects, "Namespace"))


# ---------------------------------------------------------------------- network


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present = expr["key"] in labels
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and labels.get(expr["key"]) in expr["values"]:
            return False
        if expr["operator"] == "Exists" and not present:
            return False
    return True


def external_ingress(objects: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(pod app name, port, who) for every ingress rule that admits traffic from outside
    the namespace. `who` is "anyone", "ns:<namespace>" or "ip:<cidr>"."""
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind(objects, "Deployment")
    }
    if of_kind(objects, "RabbitmqCluster"):
        pods["ferry-rabbitmq"] = {"app.kubernetes.io/name": "ferry-rabbitmq"}
    found: set[tuple[str, str, str]] = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        spec = policy["spec"]
        if "Ingress" not in spec["policyTypes"]:
            continue
        targets = [name for name, labels in pods.items() if selects(spec["podSelector"], labels)]
        for rule in spec.get("ingress", []):
            ports = [str(p["port"]) for p in rule.get("ports", [])] or ["*"]
            peers = rule.get("from")
            outsiders: list[str] = []
            if not peers:
                outsiders.append("anyone")
            for peer in peers or []:
                if "ipBlock" in peer:
                    outsiders.append(f"ip:{peer['ipBlock']['cidr']}")
                elif "namespaceSelector" in peer:
                    ns = (
                        peer["namespaceSelector"]
                        .get("matchLabels", {})
                        .get("kubernetes.io/metadata.name", "any")
                    )
                    outsiders.append(f"ns:{ns}")
            found |= {(t, p, w) for t in targets for p in ports for w in outsiders}
    return found


def test_only_promotion_and_insights_are_reachable_from_outside_the_namespace() -> None:
    scrape = {(name, "http", "ns:monitoring") for name in PORTS}
    operator = {
        ("ferry-rabbitmq", "15672", "ns:rabbitmq-system"),
        ("ferry-rabbitmq", "15692", "ns:monitoring"),
    }
    api = {("promotion", "8080", "anyone"), ("insights", "8085", "anyone")}
    assert external_ingress(render("overlays/local")) == api | scrape | operator
    watchers = {
        ("ferry-rabbitmq", "5671", "ip:198.51.100.0/24"),
        ("ferry-rabbitmq", "5671", "ip:203.0.113.0/24"),
    }
    production_scrape = {s for s in scrape if s[0] != "cluster-watcher"}
    assert (
        external_ingress(render("overlays/production"))
        == api | production_scrape | operator | watchers
    )
    for cluster in ("cluster-dev-eu", "cluster-prod-eu"):
        assert external_ingress(render(f"overlays/{cluster}")) == {
            ("cluster-watcher", "http", "ns:monitoring")
        }


@pytest.mark.parametrize("target", ["base/core", "overlays/production"])
def test_the_namespace_denies_by_default(target: str) -> None:
    policies = by_name(render(target), "NetworkPolicy")
    assert policies["default-deny"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }
    egress_ports = {
        name: {
            str(p["port"]) for rule in p_["spec"].get("egress", []) for p in rule.get("ports", [])
        }
        for name, p_ in policies.items()
    }
    assert egress_ports["postgresql"] == {"5432"}
    assert egress_ports["services-to-rabbitmq"] == {"5672"}


# ---------------------------------------------------------------------- secrets, broker, Flux


SECRET_NAMES = {f"ferry-{name}" for name in PORTS} | {"ferry-rabbitmq-definitions"}


@pytest.mark.parametrize("target", RENDERED)
def test_secrets_are_referenced_never_inlined(target: str) -> None:
    objects = render(target)
    assert not of_kind(objects, "Secret")
    text = yaml.safe_dump_all(objects)
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "a URL with credentials is inlined"
    for deployment in of_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for env in container["env"]:
                secret = r"TOKEN|SECRET|PASSWORD|AMQP_URL|DATABASE_URL|SMTP_URL|REPO_URL"
                if re.search(secret, env["name"]) and not env["name"].endswith("_FILE"):
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == f"ferry-{deployment['metadata']['name']}", env["name"]
        for volume in pod["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in SECRET_NAMES
    for cluster in of_kind(objects, "RabbitmqCluster"):
        volumes = cluster["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]["volumes"]
        assert [v["secret"]["secretName"] for v in volumes] == ["ferry-rabbitmq-definitions"]


@pytest.mark.parametrize(
    ("target", "nodes"), [("base", 3), ("overlays/production", 3), ("overlays/local", 1)]
)
def test_rabbitmq_cluster_loads_the_definitions(target: str, nodes: int) -> None:
    (cluster,) = of_kind(render(target), "RabbitmqCluster")
    assert cluster["spec"]["replicas"] == nodes
    config = cluster["spec"]["rabbitmq"]["additionalConfig"]
    (path,) = re.findall(r"^load_definitions = (\S+)$", config, re.MULTILINE)
    template = cluster["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]
    (mount,) = template["containers"][0]["volumeMounts"]
    assert mount["mountPath"] == path
    assert mount["subPath"] == "definitions.json"


@pytest.mark.parametrize(
    ("overlay", "environments"),
    [
        ("local", {"dev", "staging", "prod"}),
        ("production", set()),
        ("cluster-dev-eu", {"dev", "staging"}),
        ("cluster-prod-eu", {"prod"}),
    ],
)
def test_flux_applies_one_kustomization_per_environment(
    overlay: str, environments: set[str]
) -> None:
    objects = render(f"overlays/{overlay}")
    sources = by_name(objects, "GitRepository")
    kustomizations = of_kind(objects, "Kustomization")
    assert {k["spec"]["path"] for k in kustomizations} == {
        f"./environments/{e}/payments" for e in environments
    }
    for kustomization in kustomizations:
        assert kustomization["spec"]["sourceRef"]["name"] in sources
        assert kustomization["spec"]["prune"] is True
    assert set(sources) == ({"ferry-config"} if environments else set())


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "production"])
def test_each_watcher_reports_exactly_the_environments_its_cluster_runs(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    applied = {k["spec"]["path"].split("/")[2] for k in of_kind(objects, "Kustomization")}
    watcher = by_name(objects, "Deployment")["cluster-watcher"]
    (container,) = containers(watcher)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert set(env["FERRY_CLUSTER_ENVIRONMENTS"].split(",")) == applied


# ---------------------------------------------------------------------- alerts


def test_every_alert_uses_metrics_that_exist_and_is_documented() -> None:
    (rule,) = of_kind(render("base"), "PrometheusRule")
    known: set[str] = set()  # the series names Prometheus sees for each runtime metric
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            name, kind = metric._name, metric._type
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
            known |= {name + suffix for suffix in suffixes.get(str(kind), [""])}
    assert "ferry_messages_total" in known
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(alerts) >= 6
    for alert in alerts:
        for name in re.findall(r"\bferry_[a-z_]+", alert["expr"]):
            assert name in known, (alert["alert"], name)
        assert f"`{alert['alert']}`" in operations, f"{alert['alert']} is not in docs/operations.md"
    used = " ".join(a["expr"] for a in alerts)
    for required in (
        "ferry_messages_total",
        "ferry_broker_connected",
        "ferry_publish_failures_total",
    ):
        assert required in used


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def test_the_alert_rules_pass_promtool_check(tmp_path: Path) -> None:
    promtool = _promtool()
    (rule,) = of_kind(render("base"), "PrometheusRule")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    done = subprocess.run(
        [promtool, "check", "rules", str(rules)], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_alerts_fire_on_the_failures_they_describe(tmp_path: Path) -> None:
    """promtool's rule unit tests over synthetic series (annotations left out: their text is
    checked by `promtool check rules` above; here it is which alert fires, when, for what)."""
    promtool = _promtool()
    (rule,) = of_kind(render("base"), "PrometheusRule")
    spec = copy.deepcopy(rule["spec"])
    for group in spec["groups"]:
        for alert in group["rules"]:
            alert.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    notifier = 'service="notifier",event_type="ferry.rollout.failed.v1"'
    promotion = 'service="promotion",event_type="ferry.release.requested.v1"'
    series = [
        # notifier: one dead letter at minute 2; most messages fail from 0 to 40.
        (f'ferry_messages_total{{{notifier},outcome="dead_lettered"}}', "0 0 1x40"),
        (f'ferry_messages_total{{{notifier},outcome="retried"}}', "0+5x40"),
        (f'ferry_messages_total{{{notifier},outcome="acked"}}', "0+1x40"),
        (f'ferry_messages_total{{{promotion},outcome="acked"}}', "0+10x40"),  # healthy
        # git-writer loses its broker at minute 1; promotion never does.
        ('ferry_broker_connected{service="git-writer",pod="git-writer-0"}', "1 0x40"),
        ('ferry_broker_connected{service="promotion",pod="promotion-0"}', "1x40"),
        # a dead letter waits in the notifier's DLQ; its main queue holds a little work.
        ('rabbitmq_queue_messages{vhost="ferry",queue="ferry.notifier.dlq"}', "1x40"),
        ('rabbitmq_queue_messages{vhost="ferry",queue="ferry.notifier"}', "5x40"),
        # nobody consumes git-writer's queue; a DLQ never has consumers (and is no alert).
        ('rabbitmq_queue_consumers{vhost="ferry",queue="ferry.git-writer"}', "0x40"),
        ('rabbitmq_queue_consumers{vhost="ferry",queue="ferry.git-writer.dlq"}', "0x40"),
        ('rabbitmq_queue_consumers{vhost="ferry",queue="ferry.promotion"}', "2x40"),
    ]
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": name, "values": values} for name, values in series],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "FerryDeadLetters", "exp_alerts": []},
                    {
                        "eval_time": "5m",
                        "alertname": "FerryDeadLetters",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "service": "notifier",
                                    "event_type": "ferry.rollout.failed.v1",
                                }
                            }
                        ],
                    },
                    {"eval_time": "2m", "alertname": "FerryBrokerDisconnected", "exp_alerts": []},
                    {
                        "eval_time": "4m",
                        "alertname": "FerryBrokerDisconnected",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "service": "git-writer",
                                    "pod": "git-writer-0",
                                }
                            }
                        ],
                    },
                    {
                        "eval_time": "30m",
                        "alertname": "FerryHandlerErrors",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "warning", "service": "notifier"}}
                        ],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "FerryDeadLetterQueueNotEmpty",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "35m",
                        "alertname": "FerryDeadLetterQueueNotEmpty",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "warning", "queue": "ferry.notifier.dlq"}}
                        ],
                    },
                    {
                        "eval_time": "10m",
                        "alertname": "FerryQueueNoConsumer",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "critical", "queue": "ferry.git-writer"}}
                        ],
                    },
                    {"eval_time": "30m", "alertname": "FerryQueueBacklog", "exp_alerts": []},
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests), encoding="utf-8")
    done = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------- the dashboard's address


@pytest.mark.parametrize(
    ("target", "url"),
    [
        ("base/core", ""),
        ("overlays/local", "http://localhost:8085"),
        ("overlays/production", "https://ferry.example.com"),
    ],
)
def test_the_notifier_links_to_the_dashboard_at_the_address_of_the_overlay(
    target: str, url: str
) -> None:
    """``FERRY_DASHBOARD_URL`` comes from the ``ferry-dashboard`` ConfigMap (the base leaves it
    empty: no links; each overlay sets where people reach insights), and its value is one
    the notifier's setting accepts."""
    from ferry_notifier.settings import NotifierSettings

    objects = render(target)
    [notifier] = containers(by_name(objects, "Deployment")["notifier"])
    [env] = [e for e in notifier["env"] if e["name"] == "FERRY_DASHBOARD_URL"]
    ref = env["valueFrom"]["configMapKeyRef"]
    maps = by_name(objects, "ConfigMap")
    assert ref["name"] in maps
    assert ref["name"].startswith("ferry-dashboard-")
    value = maps[ref["name"]]["data"][ref["key"]]
    assert value == url
    pattern = NotifierSettings.model_fields["dashboard_url"].metadata
    assert any(re.fullmatch(m.pattern, value) for m in pattern if hasattr(m, "pattern"))
