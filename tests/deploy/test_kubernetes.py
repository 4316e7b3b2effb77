"""deploy/k8s: schema checks with kubernetes-validate, yamllint, and the rules between objects."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]  # no stubs

from tests.deploy.conftest import APP_UID
from tests.deploy.tools import (
    DEPLOY,
    K8S,
    KUBERNETES_VERSION,
    manifests,
    run_kubernetes_validate,
    run_yamllint,
)

SECRET_NAME = "enrolink-secrets"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((K8S / name).read_text())
    return document


def pod_spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = load(name)["spec"]["template"]["spec"]
    return spec


def workloads() -> list[str]:
    return [path.name for path in manifests() if load(path.name)["kind"] in {"Deployment", "Job"}]


def container(name: str) -> dict[str, Any]:
    containers = pod_spec(name)["containers"]
    assert len(containers) == 1, name
    only: dict[str, Any] = containers[0]
    return only


def env_names(name: str) -> dict[str, Any]:
    return {item["name"]: item for item in container(name).get("env", [])}


# ---------------------------------------------------------------------------------------------
# tools


def test_schemas_shipped_for_pinned_version() -> None:
    # The schemas are files inside the package, so validation needs no network.
    assert KUBERNETES_VERSION in all_versions()


def test_manifests_valid_strict() -> None:
    result = run_kubernetes_validate(*manifests())

    assert result.ok, result.output


def test_validate_rejects_unknown_field(tmp_path: Path) -> None:
    broken = tmp_path / "api-deployment.yaml"
    text = (K8S / "api-deployment.yaml").read_text().replace("readinessProbe:", "readinesProbe:")
    broken.write_text(text)

    result = run_kubernetes_validate(broken)

    assert not result.ok
    assert "readinesProbe" in result.output


def test_validate_rejects_unknown_kind(tmp_path: Path) -> None:
    broken = tmp_path / "api-pdb.yaml"
    broken.write_text(
        (K8S / "api-pdb.yaml").read_text().replace("PodDisruptionBudget", "PodDisruptionBugdet")
    )

    result = run_kubernetes_validate(broken)

    assert not result.ok


def test_deploy_yaml_passes_yamllint() -> None:
    result = run_yamllint(DEPLOY)

    assert result.ok, result.output


def test_yamllint_rejects_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "deploy"
    shutil.copytree(DEPLOY, broken)
    service = broken / "k8s" / "api-service.yaml"
    service.write_text(service.read_text().replace("  selector:", "  selector: \n   ", 1))

    result = run_yamllint(broken)

    assert not result.ok
    assert "api-service.yaml" in result.output


def test_kustomization_lists_every_manifest() -> None:
    listed = load("kustomization.yaml")["resources"]

    assert sorted(listed) == [path.name for path in manifests()]


def test_kustomize_output_valid(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed, so the kustomization is not rendered")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    output = tmp_path / "rendered.yaml"
    output.write_text(rendered.stdout)

    result = run_kubernetes_validate(output)

    assert result.ok, result.output
    assert "image: registry.example.org/enrolink:0.1.0" in rendered.stdout


# ---------------------------------------------------------------------------------------------
# rules between objects


def test_api_probes() -> None:
    api = container("api-deployment.yaml")

    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The readiness budget is 0.5 s per dependency, checked concurrently.
    assert api["readinessProbe"]["timeoutSeconds"] >= 1


def test_worker_liveness_pings_itself() -> None:
    worker = container("worker-deployment.yaml")
    command = worker["livenessProbe"]["exec"]["command"]

    assert command[:2] == ["sh", "-c"]
    assert "inspect ping" in command[2]
    assert "${HOSTNAME}" in command[2]
    # Celery waits the whole --timeout for replies, so the probe needs longer than that.
    ping_timeout = int(re.search(r"--timeout (\d+)", command[2]).group(1))  # type: ignore[union-attr]
    assert worker["livenessProbe"]["timeoutSeconds"] > ping_timeout


def test_every_container_bounded_and_unprivileged() -> None:
    for name in workloads():
        spec = pod_spec(name)
        resources = container(name)["resources"]
        security = container(name)["securityContext"]

        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert {"cpu", "memory"} <= set(resources["limits"]), name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == APP_UID, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["readOnlyRootFilesystem"] is True, name


def test_secrets_only_referenced() -> None:
    kinds = {load(path.name)["kind"] for path in manifests()}
    assert "Secret" not in kinds

    for name in workloads():
        database = env_names(name)["ENROLINK_DATABASE_URL"]
        assert database["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME, name
    config = load("configmap.yaml")["data"]
    assert not any(key.endswith("_URL") for key in config)


def test_operations_creates_referenced_secret() -> None:
    operations = (DEPLOY.parent / "docs" / "operations.md").read_text()
    command = re.search(
        r"kubectl create secret generic (\S+)((?:\s*\\\n\s*--from-literal=\S+)+)", operations
    )
    assert command is not None, "docs/operations.md has no `kubectl create secret` command"
    created_keys = set(re.findall(r"--from-literal=([a-z-]+)=", command.group(2)))

    referenced_keys = set()
    for name in workloads():
        for item in env_names(name).values():
            reference = item.get("valueFrom", {}).get("secretKeyRef")
            if reference is not None:
                assert reference["name"] == command.group(1), name
                referenced_keys.add(reference["key"])
    assert created_keys == referenced_keys
    # The Secret exists before the workloads that read it.
    assert operations.index("kubectl create secret") < operations.index("kubectl apply -k")


def test_beat_single_replica_recreate() -> None:
    beat = load("beat-deployment.yaml")["spec"]

    assert beat["replicas"] == 1
    assert beat["strategy"]["type"] == "Recreate"


def test_hpa_scales_api_deployment() -> None:
    hpa = load("api-hpa.yaml")["spec"]
    api = load("api-deployment.yaml")

    assert hpa["scaleTargetRef"]["name"] == api["metadata"]["name"]
    assert hpa["minReplicas"] >= 2
    # A replicas field would fight the autoscaler on every apply.
    assert "replicas" not in api["spec"]


def test_selectors_match_pod_labels() -> None:
    api_labels = load("api-deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    worker_labels = load("worker-deployment.yaml")["spec"]["template"]["metadata"]["labels"]

    for selector, labels in (
        (load("api-service.yaml")["spec"]["selector"], api_labels),
        (load("api-pdb.yaml")["spec"]["selector"]["matchLabels"], api_labels),
        (load("worker-pdb.yaml")["spec"]["selector"]["matchLabels"], worker_labels),
    ):
        assert selector.items() <= labels.items()


def test_worker_metrics_multiprocess_dir() -> None:
    worker = container("worker-deployment.yaml")
    variables = env_names("worker-deployment.yaml")
    mounts = {mount["mountPath"] for mount in worker["volumeMounts"]}

    assert variables["ENROLINK_WORKER_METRICS_PORT"]["value"] == "9100"
    assert variables["PROMETHEUS_MULTIPROC_DIR"]["value"] in mounts
    assert any("--concurrency=" in argument for argument in worker["args"])


def test_migrate_job_runs_migrate() -> None:
    job = load("migrate-job.yaml")

    assert job["kind"] == "Job"
    assert container("migrate-job.yaml")["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
