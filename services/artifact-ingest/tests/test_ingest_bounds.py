"""Manifests within bounds: no cluster-scoped kinds, no other namespace, no remote bases."""

from __future__ import annotations

from typing import Any

import pytest

from ferry_ingest.domain import Accepted, Limits, Rejected, validate

BINDING = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ci-is-admin
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
  - kind: ServiceAccount
    name: default
    namespace: payments
"""


def _object(kind: str, namespace: str | None = None, api: str = "v1") -> str:
    ns = f"  namespace: {namespace}\n" if namespace else ""
    return f"apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: x\n{ns}"


def rejected(artifact: dict[str, Any], files: dict[str, str], **limits: Any) -> Rejected:
    outcome = validate(artifact, {"dev": files}, Limits(**limits))
    assert isinstance(outcome, Rejected), outcome
    return outcome


def test_a_cluster_role_binding_is_refused_naming_the_kind_and_file(
    example_artifact: dict[str, Any],
) -> None:
    outcome = rejected(example_artifact, {"rbac.yaml": BINDING})
    assert outcome.codes() == ["cluster-scoped-kind"]
    reason = outcome.reasons[0]
    assert reason.field == "manifests.dev.rbac.yaml"
    assert reason.message.startswith("dev/rbac.yaml, document 1: ClusterRoleBinding 'ci-is-admin'")
    assert "FERRY_INGEST_ALLOWED_KINDS" in reason.message


@pytest.mark.parametrize(
    "kind",
    [
        "Namespace",
        "ClusterRole",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
    ],
)
def test_every_cluster_scoped_kind_is_refused(example_artifact: dict[str, Any], kind: str) -> None:
    outcome = rejected(example_artifact, {"x.yaml": _object(kind)})
    assert outcome.codes() == ["cluster-scoped-kind"]
    assert kind in outcome.reasons[0].message


def test_the_allow_list_permits_a_kind(example_artifact: dict[str, Any]) -> None:
    files = {"x.yaml": _object("PriorityClass"), "y.yaml": _object("Namespace")}
    outcome = rejected(example_artifact, files, allowed_kinds=frozenset({"PriorityClass"}))
    assert outcome.codes() == ["cluster-scoped-kind"]
    assert "Namespace" in outcome.reasons[0].message


def test_a_list_cannot_smuggle_a_cluster_scoped_item(example_artifact: dict[str, Any]) -> None:
    text = "apiVersion: v1\nkind: List\nmetadata:\n  name: l\nitems:\n  - kind: ClusterRole\n"
    outcome = rejected(example_artifact, {"x.yaml": text})
    assert outcome.codes() == ["cluster-scoped-kind"]


def test_an_object_of_another_namespace_is_refused(example_artifact: dict[str, Any]) -> None:
    outcome = rejected(example_artifact, {"x.yaml": _object("Secret", "kube-system")})
    assert outcome.codes() == ["foreign-namespace"]
    assert "'kube-system'" in outcome.reasons[0].message
    assert "'payments'" in outcome.reasons[0].message


def test_the_artifacts_own_namespace_or_none_is_fine(example_artifact: dict[str, Any]) -> None:
    files = {"a.yaml": _object("ConfigMap", "payments"), "b.yaml": _object("ConfigMap")}
    assert isinstance(validate(example_artifact, {"dev": files}), Accepted)


def test_without_an_artifact_namespace_objects_name_none(example_artifact: dict[str, Any]) -> None:
    del example_artifact["namespace"]
    outcome = rejected(example_artifact, {"x.yaml": _object("ConfigMap", "payments")})
    assert outcome.codes() == ["foreign-namespace"]
    assert "the environment decides" in outcome.reasons[0].message


KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"


@pytest.mark.parametrize(
    "entry",
    [
        "https://github.com/evil/base?ref=main",
        "github.com/evil/base",
        "git@github.com:evil/base.git",
        "../../kube-system/other",
        "/etc/passwd",
    ],
)
def test_a_kustomization_with_a_remote_or_outside_base_is_refused(
    example_artifact: dict[str, Any], entry: str
) -> None:
    text = f"{KUSTOMIZATION}resources:\n  - deployment.yaml\n  - {entry!r}\n"
    outcome = rejected(example_artifact, {"kustomization.yaml": text})
    assert outcome.codes() == ["remote-kustomize-base"]
    assert "resources" in outcome.reasons[0].message


def test_a_local_kustomization_is_accepted(example_artifact: dict[str, Any]) -> None:
    files = {
        "kustomization.yaml": f"{KUSTOMIZATION}namespace: payments\nresources: [svc.yaml]\n",
        "svc.yaml": _object("Service"),
    }
    assert isinstance(validate(example_artifact, {"dev": files}), Accepted)


def test_a_kustomization_may_not_move_the_namespace_or_fetch_charts(
    example_artifact: dict[str, Any],
) -> None:
    text = f"{KUSTOMIZATION}namespace: kube-system\nhelmCharts:\n  - name: evil\n"
    outcome = rejected(example_artifact, {"kustomization.yaml": text})
    assert outcome.codes() == ["foreign-namespace", "remote-kustomize-base"]
