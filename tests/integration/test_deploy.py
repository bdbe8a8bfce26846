"""Running Fabu itself: the Helm chart (lint, render, server-side dry run on the real API
server) and the container build file (hadolint)."""

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from devstack.build import HELM
from shared.cluster.pod_security import Level, violations
from tests.support.stack import StackEnv

ROOT = Path(__file__).parents[2]
CHART = ROOT / "deploy" / "helm" / "fabu"
KEY = ["--set", "secrets.FABU_SECRET_KEY=a-fernet-key-for-tests"]
STAGES = ("api", "renderer", "deployer", "tracker", "notifier")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HELM.binary("helm")), *args], capture_output=True, text=True, check=False
    )


def rendered(*values: str, namespace: str = "fabu-system") -> list[dict[str, Any]]:
    done = helm("template", "fabu", str(CHART), "--namespace", namespace, *KEY, *values)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_the_chart_lints() -> None:
    done = helm("lint", "--strict", str(CHART), *KEY)
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_stage_is_its_own_deployment_with_probes_and_a_budget() -> None:
    docs = rendered()
    deployments = of_kind(docs, "Deployment")
    assert sorted(deployments) == sorted(f"fabu-{s}" for s in STAGES)
    for stage in STAGES:
        spec = deployments[f"fabu-{stage}"]["spec"]
        container = spec["template"]["spec"]["containers"][0]
        assert container["args"] == [f"services.{stage}"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"]
        assert spec["template"]["spec"]["serviceAccountName"] == "fabu"
    assert sorted(of_kind(docs, "PodDisruptionBudget")) == sorted(f"fabu-{s}" for s in STAGES)
    assert of_kind(docs, "HorizontalPodAutoscaler") == {}
    assert {d["kind"] for d in docs} >= {"Role", "RoleBinding"}


def test_scaling_values_set_each_stages_replicas() -> None:
    docs = rendered("--set", "stages.tracker.replicas=7", "--set", "stages.api.replicas=3")
    replicas = {n: d["spec"]["replicas"] for n, d in of_kind(docs, "Deployment").items()}
    assert replicas == {
        "fabu-api": 3,
        "fabu-renderer": 1,
        "fabu-deployer": 1,
        "fabu-tracker": 7,
        "fabu-notifier": 1,
    }
    docs = rendered(
        "--set", "stages.tracker.autoscaling.enabled=true", "--set", "stages.tracker.replicas=2"
    )
    assert "replicas" not in of_kind(docs, "Deployment")["fabu-tracker"]["spec"]
    hpa = of_kind(docs, "HorizontalPodAutoscaler")["fabu-tracker"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["scaleTargetRef"]["name"] == "fabu-tracker"


def test_a_missing_secret_key_is_refused_with_the_reason() -> None:
    done = helm("template", "fabu", str(CHART))
    assert done.returncode != 0
    assert "FABU_SECRET_KEY is required" in done.stderr


async def test_the_api_server_accepts_every_object(stack_env: StackEnv, namespace: str) -> None:
    for values in (
        ["--set", "ingress.enabled=true", "--set", f"rbac.namespaces={{{namespace}}}"],
        ["--set", "rbac.clusterWide=true"],
    ):
        docs = rendered(*values, namespace=namespace)
        manifest = yaml.safe_dump_all(docs)
        process = await asyncio.create_subprocess_exec(
            str(stack_env.kubectl),
            f"--kubeconfig={stack_env.kubeconfig}",
            "apply",
            "--server-side",
            "--dry-run=server",
            f"--namespace={namespace}",
            "-f",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate(manifest.encode())
        assert process.returncode == 0, err.decode()
        applied = [line for line in out.decode().splitlines() if "serverside-applied" in line]
        assert len(applied) == len(docs), out.decode()


def test_rbac_is_a_role_per_namespace_unless_cluster_wide_is_asked_for() -> None:
    docs = rendered("--set", "rbac.namespaces={team-a,team-b,team-a}")
    roles, bindings = of_kind_in(docs, "Role"), of_kind_in(docs, "RoleBinding")
    assert (
        sorted(roles) == sorted(bindings) == [("team-a", "fabu-deploy"), ("team-b", "fabu-deploy")]
    )
    assert not {"ClusterRole", "ClusterRoleBinding"} & {d["kind"] for d in docs}
    for binding in bindings.values():
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "fabu-deploy",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "fabu", "namespace": "fabu-system"}
        ]
    rules = roles[("team-a", "fabu-deploy")]["rules"]
    verbs = {(group, resource): set(rule["verbs"]) for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]}  # fmt: skip
    # Server-side apply, reads, pruning; watches where the tracker watches; never update.
    assert verbs[("apps", "deployments")] == {"get", "list", "watch", "create", "patch", "delete"}
    assert verbs[("", "secrets")] == {"get", "list", "create", "patch", "delete"}
    assert verbs[("", "pods")] == verbs[("apps", "replicasets")] == {"get", "list", "watch"}
    assert verbs[("", "pods/log")] == {"get"}
    assert verbs[("batch", "cronjobs")] >= {"list", "delete"}  # pruning lists CronJobs
    assert not any("*" in v or "update" in v for v in verbs.values())
    # The default: the default namespace only.
    assert list(of_kind_in(rendered(), "Role")) == [("default", "fabu-deploy")]

    wide = rendered("--set", "rbac.clusterWide=true", "--set", "rbac.namespaces={team-a}")
    assert not {"Role", "RoleBinding"} & {d["kind"] for d in wide}
    [role] = of_kind(wide, "ClusterRole").values()
    assert role["rules"] == rules
    [binding] = of_kind(wide, "ClusterRoleBinding").values()
    assert binding["roleRef"]["kind"] == "ClusterRole"

    extra = "rbac.extraRules[0].apiGroups[0]=networking.k8s.io,rbac.extraRules[0].resources[0]=networkpolicies,rbac.extraRules[0].verbs[0]=get"
    [role] = of_kind(rendered("--set", extra), "Role").values()
    assert role["rules"][-1] == {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get"]}  # fmt: skip

    done = helm("template", "fabu", str(CHART), *KEY, "--set", "rbac.namespaces=null")
    assert done.returncode != 0
    assert "rbac.namespaces is empty" in done.stderr


def test_fabus_own_chart_passes_the_checks_it_puts_on_templates() -> None:
    # Fabu's pods meet the restricted standard, and its RBAC binds no ClusterRole.
    assert violations(rendered(), Level.RESTRICTED, allow_rbac=True) == []


def of_kind_in(docs: list[dict[str, Any]], kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == kind
    }


def test_the_container_build_file_lints() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout


def test_the_chart_denies_cloud_metadata_and_mounts_kubeconfigs_when_given() -> None:
    plain = rendered()
    [config] = of_kind(plain, "ConfigMap").values()
    assert config["data"]["FABU_EGRESS_DENY"] == "metadata,link-local"
    assert "FABU_KUBECONFIG_DIR" not in config["data"]
    with_files = rendered("--set", "kubeconfigs.existingSecret=clusters")
    [config] = of_kind(with_files, "ConfigMap").values()
    assert config["data"]["FABU_KUBECONFIG_DIR"] == "/etc/fabu/kubeconfigs"
    for deployment in of_kind(with_files, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["kubeconfigs"]["secret"]["secretName"] == "clusters"
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["kubeconfigs"] == {
            "name": "kubeconfigs",
            "mountPath": "/etc/fabu/kubeconfigs",
            "readOnly": True,
        }
