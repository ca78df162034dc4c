"""The pure parts of git-writer: stamping workloads and planning each change."""

from __future__ import annotations

import json

import pytest
import yaml

from ferry_events import (
    Actor,
    Application,
    ArtifactAccepted,
    ArtifactSpec,
    EventData,
    Intent,
    InvalidManifest,
    PolicyChangeRequested,
    ReleaseApproved,
    Stamp,
    stamp_manifest,
)
from ferry_gitwriter.domain import paths
from ferry_gitwriter.domain.changes import (
    CommitPlan,
    Refused,
    ReleaseFailure,
    Unchanged,
    artifact_json,
    check_event,
    plan_policy,
    plan_release,
    plan_store_artifact,
)

STAMP = Stamp(
    service="payments",
    environment="prod",
    artifact_id="master-0017d995e3-67e9d69164",
    release_id="rel-1",
    author="jane@example.com",
)

SERVICE_DOC = """\
apiVersion: v1
kind: Service
metadata:
  name: payments   # CI's comment stays
spec:
  ports: [{port: 80}]
"""

DEPLOYMENT_DOC = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments
spec:
  template:
    metadata:
      labels: {app: payments}
    spec:
      containers: [{name: payments, image: payments:1}]
"""

CRONJOB_DOC = """\
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  annotations:
    team: checkout
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: job, image: job:1}]
"""


class Tree:
    """A TreeReader over a dict of files."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = dict(files or {})

    def read(self, path: str) -> bytes | None:
        return self.files.get(path)

    def files_under(self, directory: str) -> dict[str, bytes]:
        prefix = directory + "/"
        return {p[len(prefix) :]: c for p, c in self.files.items() if p.startswith(prefix)}

    def subfolders(self, directory: str) -> set[str]:
        below = self.files_under(directory)
        return {path.split("/")[0] for path in below if "/" in path}

    def held(self, folder: str) -> None:
        return None  # no commit history: nothing is ordered


def _spec(artifact_id: str = "master-0017d995e3-67e9d69164") -> ArtifactSpec:
    return ArtifactSpec(
        id=artifact_id,
        service="payments",
        namespace="payments",
        application=Application(
            branch="master", sha="0017d995e3", author_name="Jane", author_email="jane@example.com"
        ),
    )


def _approved(**overrides: object) -> ReleaseApproved:
    fields: dict[str, object] = {
        "release_id": "rel-1",
        "service": "payments",
        "environment": "prod",
        "namespace": "payments",
        "artifact_id": "master-0017d995e3-67e9d69164",
        "intent": Intent.PROMOTE,
        "actor": Actor(subject="bob", email="bob@example.com", name="Bob"),
        "promoted_from": "staging",
        "author_email": "jane@example.com",
    }
    fields.update(overrides)
    return ReleaseApproved.model_validate(fields)


def _stored_tree() -> Tree:
    build = "builds/payments/master-0017d995e3-67e9d69164"
    return Tree(
        {
            f"{build}/artifact.json": artifact_json(_spec()),
            f"{build}/prod/app.yaml": f"{DEPLOYMENT_DOC}---\n{SERVICE_DOC}".encode(),
            f"{build}/staging/app.yaml": SERVICE_DOC.encode(),
        }
    )


# --------------------------------------------------------------------------- stamping


def test_multi_document_yaml_stamps_workloads_and_keeps_other_documents_byte_for_byte() -> None:
    text = f"{SERVICE_DOC}---\n{DEPLOYMENT_DOC}--- # a comment on the separator\n{SERVICE_DOC}"
    out = stamp_manifest(text, STAMP)
    service_1, deployment, service_2 = out.split("---")[0], *list(yaml.safe_load_all(out))[1:]
    assert service_1 == SERVICE_DOC
    assert out.endswith(f"--- # a comment on the separator\n{SERVICE_DOC}")
    assert service_2["kind"] == "Service"
    assert "annotations" not in service_2["metadata"]
    assert deployment["metadata"]["annotations"] == STAMP.annotations()
    template = deployment["spec"]["template"]["metadata"]
    assert template["annotations"] == STAMP.annotations()
    assert template["labels"] == {"app": "payments"}


def test_cronjob_is_stamped_on_itself_its_job_template_and_its_pod_template() -> None:
    [doc] = yaml.safe_load_all(stamp_manifest(CRONJOB_DOC, STAMP))
    assert doc["metadata"]["annotations"] == {"team": "checkout", **STAMP.annotations()}
    job = doc["spec"]["jobTemplate"]
    assert job["metadata"]["annotations"] == STAMP.annotations()
    assert job["spec"]["template"]["metadata"]["annotations"] == STAMP.annotations()
    assert doc["spec"]["schedule"] == "0 3 * * *"


def test_pod_is_stamped_in_its_own_metadata() -> None:
    pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: []\n"
    [doc] = yaml.safe_load_all(stamp_manifest(pod, STAMP))
    assert doc["metadata"]["annotations"]["ferry.dev/release-id"] == "rel-1"


def test_non_workload_only_manifest_is_unchanged() -> None:
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1'}\n"
    assert stamp_manifest(config_map, STAMP) == config_map


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("kind: Deployment\nmetadata: {name: x}\nspec: {}\n", r"Deployment.spec.template"),
        ("kind: [unclosed\n", "not valid YAML"),
        ("kind: Deployment\nmetadata: [1]\nspec: {template: {}}\n", "metadata is not a mapping"),
    ],
)
def test_invalid_workloads_are_named(text: str, match: str) -> None:
    with pytest.raises(InvalidManifest, match=match):
        stamp_manifest(text, STAMP, name="app.yaml")


# --------------------------------------------------------------------------- planning


def test_store_artifact_plans_the_build_folder_with_title_and_trailers() -> None:
    plan = plan_store_artifact("ev-1", _spec(), {"prod": {"app": DEPLOYMENT_DOC}}, Tree())
    assert isinstance(plan, CommitPlan)
    folder = "builds/payments/master-0017d995e3-67e9d69164"
    assert plan.title == "[builds/payments] store master-0017d995e3-67e9d69164"
    assert set(plan.folders[folder]) == {"artifact.json", "prod/app.yaml"}
    assert json.loads(plan.folders[folder]["artifact.json"])["application"]["authorEmail"] == (
        "jane@example.com"
    )
    assert plan.message().endswith(
        "\n\nFerry-Event-Id: ev-1\nFerry-Artifact-Id: master-0017d995e3-67e9d69164\n"
        "Ferry-Service: payments\nFerry-Actor: jane@example.com\n"
    )


def test_same_build_again_is_unchanged_and_different_content_is_refused() -> None:
    manifests = {"prod": {"app.yaml": DEPLOYMENT_DOC}}
    plan = plan_store_artifact("ev-1", _spec(), manifests, Tree())
    assert isinstance(plan, CommitPlan)
    folder, files = next(iter(plan.folders.items()))
    tree = Tree({f"{folder}/{name}": content for name, content in files.items()})
    assert plan_store_artifact("ev-2", _spec(), manifests, tree) == Unchanged(folder)
    with pytest.raises(Refused, match=r"already stored .* with different content") as refused:
        plan_store_artifact("ev-3", _spec(), {"prod": {"app.yaml": SERVICE_DOC}}, tree)
    assert refused.value.code == "artifact-conflict"


@pytest.mark.parametrize(
    "manifests",
    [{"../etc": {"a.yaml": "x"}}, {"prod": {"../../x.yaml": "x"}}, {"prod": {".git": "x"}}],
)
def test_unsafe_paths_are_refused(manifests: dict[str, dict[str, str]]) -> None:
    with pytest.raises(Refused) as refused:
        plan_store_artifact("ev-1", _spec(), manifests, Tree())
    assert refused.value.code == "unsafe-path"


def test_release_plans_the_environment_folder_stamped_with_artifact_json() -> None:
    tree = _stored_tree()
    plan = plan_release("ev-9", _approved(), tree)
    assert isinstance(plan, CommitPlan)
    assert plan.title == "[prod/payments] promote master-0017d995e3-67e9d69164 by bob@example.com"
    assert dict(plan.trailers) == {
        "Ferry-Event-Id": "ev-9",
        "Ferry-Release-Id": "rel-1",
        "Ferry-Artifact-Id": "master-0017d995e3-67e9d69164",
        "Ferry-Service": "payments",
        "Ferry-Environment": "prod",
        "Ferry-Intent": "promote",
        "Ferry-Actor": "bob@example.com",
        "Ferry-Promoted-From": "staging",
    }
    assert plan.author is not None
    assert plan.author.email == "bob@example.com"
    files = plan.folders["environments/prod/payments/payments"]
    assert files["artifact.json"] == tree.read(
        "builds/payments/master-0017d995e3-67e9d69164/artifact.json"
    )
    deployment, service = yaml.safe_load_all(files["app.yaml"])
    assert deployment["metadata"]["annotations"]["ferry.dev/author"] == "jane@example.com"
    assert "annotations" not in service["metadata"]
    # applied, the same release is no change
    tree.files.update({f"environments/prod/payments/payments/{n}": c for n, c in files.items()})
    assert plan_release("ev-10", _approved(), tree) == Unchanged(
        "environments/prod/payments/payments"
    )


def test_release_of_unknown_artifact_or_environment_without_manifests_fails() -> None:
    missing = plan_release("ev", _approved(artifact_id="master-nope"), _stored_tree())
    assert isinstance(missing, ReleaseFailure)
    assert missing.code == "unknown-artifact"
    no_dev = plan_release("ev", _approved(environment="dev"), _stored_tree())
    assert isinstance(no_dev, ReleaseFailure)
    assert no_dev.code == "no-manifests-for-environment"


def test_release_without_namespace_uses_the_artifacts() -> None:
    plan = plan_release("ev", _approved(namespace=""), _stored_tree())
    assert isinstance(plan, CommitPlan)
    assert list(plan.folders) == ["environments/prod/payments/payments"]


def test_release_to_another_namespace_removes_the_old_folder_in_the_same_commit() -> None:
    tree = _stored_tree()
    first = plan_release("ev-1", _approved(namespace="legacy"), tree)
    assert isinstance(first, CommitPlan)
    for folder, files in first.folders.items():
        tree.files.update({f"{folder}/{name}": content for name, content in files.items()})
    tree.files["environments/prod/legacy/ledger/artifact.json"] = b"{}"  # another service
    tree.files["environments/staging/payments/payments/artifact.json"] = b"{}"  # another env
    moved = plan_release("ev-2", _approved(), tree)
    assert isinstance(moved, CommitPlan)
    assert moved.folders == {
        "environments/prod/payments/payments": first.folders["environments/prod/legacy/payments"],
        "environments/prod/legacy/payments": {},  # removed
    }
    assert moved.path == "environments/prod/payments/payments"
    assert moved.message().startswith(
        "[prod/payments] promote master-0017d995e3-67e9d69164 by bob@example.com\n\n"
        "Moves payments in prod to namespace payments from legacy: "
        "removes environments/prod/legacy/payments/\n\nFerry-Event-Id: ev-2\n"
    )


def test_same_folder_but_a_leftover_namespace_is_still_a_change() -> None:
    tree = _stored_tree()
    plan = plan_release("ev-1", _approved(), tree)
    assert isinstance(plan, CommitPlan)
    [(folder, files)] = plan.folders.items()
    tree.files.update({f"{folder}/{name}": content for name, content in files.items()})
    tree.files["environments/prod/old/payments/app.yaml"] = b"kind: Deployment\n"
    tree.files["environments/prod/Not_A_Namespace/payments/app.yaml"] = b"kept\n"
    again = plan_release("ev-2", _approved(), tree)
    assert isinstance(again, CommitPlan)
    assert again.folders["environments/prod/old/payments"] == {}
    assert set(again.folders) == {folder, "environments/prod/old/payments"}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_approved(namespace="../../x"), "namespace"),
        (_approved(environment="Prod"), "environment"),
        (_approved(artifact_id="../etc"), "artifact id"),
        (_approved(service="pay/ments"), "service"),
        (
            PolicyChangeRequested(
                request_id="p", service="../x", policy={}, actor=Actor(subject="ops")
            ),
            "service",
        ),
    ],
)
def test_unsafe_ids_are_refused_from_the_event_alone(data: EventData, match: str) -> None:
    with pytest.raises(Refused, match=match) as refused:
        check_event(data)
    assert refused.value.code == "unsafe-path"


def test_unsafe_manifest_names_are_refused_from_the_event_alone_and_safe_events_pass() -> None:
    bad = ArtifactAccepted(artifact=_spec(), manifests={"prod": {"../../x.yaml": "x"}})
    with pytest.raises(Refused, match="manifest file name"):
        check_event(bad)
    check_event(ArtifactAccepted(artifact=_spec(), manifests={"prod": {"app": "x"}}))
    check_event(_approved(namespace=""))  # the artifact's namespace is judged against the repo


def test_release_to_unsafe_namespace_is_refused() -> None:
    with pytest.raises(Refused, match="namespace"):
        plan_release("ev", _approved(namespace="../../x"), _stored_tree())


def test_policy_apply_keeps_key_order_and_delete_removes_the_file() -> None:
    actor = Actor(subject="ops", email="ops@example.com")
    policy = {"autoRelease": [{"branch": "master", "environment": "dev"}], "approvals": {}}
    request = PolicyChangeRequested(request_id="p1", service="payments", policy=policy, actor=actor)
    plan = plan_policy("ev", request, Tree())
    assert isinstance(plan, CommitPlan)
    assert plan.title == "[policies/payments] apply by ops@example.com"
    content = plan.files["policies/payments.yaml"]
    assert content is not None
    assert content.decode().startswith("autoRelease:")
    tree = Tree({"policies/payments.yaml": content})
    assert plan_policy("ev2", request, tree) == Unchanged("policies/payments.yaml")
    delete = request.model_copy(update={"policy": None})
    deleted = plan_policy("ev3", delete, tree)
    assert isinstance(deleted, CommitPlan)
    assert deleted.title == "[policies/payments] delete by ops@example.com"
    assert deleted.files == {"policies/payments.yaml": None}


def test_trailers_and_titles_are_one_line_whatever_the_actor_says() -> None:
    actor = Actor(subject="x", email="evil@example.com\nFerry-Event-Id: forged")
    request = PolicyChangeRequested(request_id="p", service="payments", policy={}, actor=actor)
    plan = plan_policy("ev", request, Tree())
    assert isinstance(plan, CommitPlan)
    lines = plan.message().splitlines()
    assert [line for line in lines if line.startswith("Ferry-Event-Id:")] == ["Ferry-Event-Id: ev"]
    assert "\n" not in plan.title


def test_paths_accept_only_validated_ids() -> None:
    assert paths.build_dir("payments", "master-1") == "builds/payments/master-1"
    for bad in ("Payments", "a/b", "..", ""):
        with pytest.raises(paths.UnsafeId):
            paths.environment_dir("prod", bad, "payments")
