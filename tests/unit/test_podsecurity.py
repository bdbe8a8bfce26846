"""The Pod Security Standards and the RBAC rules on a release's objects: each control
refuses what the standard refuses at its level and lets through what it allows, says
where, and no shape of input makes the check raise."""

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.cluster.pod_security import Level, violations

Obj = dict[str, Any]
Change = Callable[[Obj], object]


def deployment() -> Obj:
    """A Deployment every level allows: the restricted standard's fields, all set."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "app",
                            "image": "web:1",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                    "volumes": [{"name": "config", "configMap": {"name": "web"}}],
                },
            }
        },
    }


def pod(d: Obj) -> Obj:
    spec: Obj = d["spec"]["template"]["spec"]
    return spec


def pod_context(d: Obj) -> Obj:
    context: Obj = pod(d)["securityContext"]
    return context


def app(d: Obj) -> Obj:
    container: Obj = pod(d)["containers"][0]
    return container


def context(d: Obj) -> Obj:
    security: Obj = app(d)["securityContext"]
    return security


def changed(change: Change) -> Obj:
    d = deployment()
    change(d)
    return d


def controls(found: list[str]) -> list[str]:
    return [sentence.rsplit("(", 1)[1].rstrip(")") for sentence in found]


SPEC = "spec.template.spec"
P = f"Deployment 'web': {SPEC}"
C = f"{P}.containers[app]"

# (what, change, the control, the lowest level that refuses it, where the sentence points)
REFUSED: list[tuple[str, Change, str, Level, str]] = [
    (
        "pod host process",
        lambda d: pod_context(d).update(windowsOptions={"hostProcess": True}),
        "HostProcess",
        Level.BASELINE,
        f"{P}.securityContext.windowsOptions.hostProcess is true",
    ),
    (
        "container host process",
        lambda d: context(d).update(windowsOptions={"hostProcess": True}),
        "HostProcess",
        Level.BASELINE,
        f"{C}.securityContext.windowsOptions.hostProcess is true",
    ),
    (
        "hostNetwork",
        lambda d: pod(d).update(hostNetwork=True),
        "Host Namespaces",
        Level.BASELINE,
        f"{P}.hostNetwork is true",
    ),
    (
        "hostPID",
        lambda d: pod(d).update(hostPID=True),
        "Host Namespaces",
        Level.BASELINE,
        f"{P}.hostPID is true",
    ),
    (
        "hostIPC",
        lambda d: pod(d).update(hostIPC=True),
        "Host Namespaces",
        Level.BASELINE,
        f"{P}.hostIPC is true",
    ),
    (
        "privileged",
        lambda d: context(d).update(privileged=True),
        "Privileged Containers",
        Level.BASELINE,
        f"{C}.securityContext.privileged is true",
    ),
    (
        "a capability beyond the default set",
        lambda d: context(d)["capabilities"].update(add=["NET_ADMIN"]),
        "Capabilities",
        Level.BASELINE,
        f"{C}.securityContext.capabilities.add has NET_ADMIN",
    ),
    (
        "hostPath",
        lambda d: pod(d)["volumes"].append({"name": "root", "hostPath": {"path": "/"}}),
        "HostPath Volumes",
        Level.BASELINE,
        f"{P}.volumes[root].hostPath",
    ),
    (
        "hostPort",
        lambda d: app(d)["ports"][0].update(hostPort=80),
        "Host Ports",
        Level.BASELINE,
        f"{C}.ports[http].hostPort is 80",
    ),
    (
        "a probe's host",
        lambda d: app(d).update(livenessProbe={"httpGet": {"host": "10.0.0.1", "port": 80}}),
        "Host Probes / Lifecycle Hooks",
        Level.BASELINE,
        f"{C}.livenessProbe.httpGet.host is 10.0.0.1",
    ),
    (
        "a lifecycle hook's host",
        lambda d: app(d).update(lifecycle={"preStop": {"tcpSocket": {"host": "node", "port": 1}}}),
        "Host Probes / Lifecycle Hooks",
        Level.BASELINE,
        f"{C}.lifecycle.preStop.tcpSocket.host is node",
    ),
    (
        "AppArmor unconfined",
        lambda d: context(d).update(appArmorProfile={"type": "Unconfined"}),
        "AppArmor",
        Level.BASELINE,
        f"{C}.securityContext.appArmorProfile.type is Unconfined",
    ),
    (
        "AppArmor unconfined by annotation",
        lambda d: d["spec"]["template"]["metadata"].update(
            annotations={"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}
        ),
        "AppArmor",
        Level.BASELINE,
        "Deployment 'web': spec.template.metadata.annotations"
        "[container.apparmor.security.beta.kubernetes.io/app] is unconfined",
    ),
    (
        "SELinux type",
        lambda d: pod_context(d).update(seLinuxOptions={"type": "spc_t"}),
        "SELinux",
        Level.BASELINE,
        f"{P}.securityContext.seLinuxOptions.type is spc_t",
    ),
    (
        "SELinux user",
        lambda d: context(d).update(seLinuxOptions={"user": "system_u"}),
        "SELinux",
        Level.BASELINE,
        f"{C}.securityContext.seLinuxOptions.user is set",
    ),
    (
        "SELinux role",
        lambda d: context(d).update(seLinuxOptions={"role": "sysadm_r"}),
        "SELinux",
        Level.BASELINE,
        f"{C}.securityContext.seLinuxOptions.role is set",
    ),
    (
        "unmasked /proc",
        lambda d: context(d).update(procMount="Unmasked"),
        "/proc Mount Type",
        Level.BASELINE,
        f"{C}.securityContext.procMount is Unmasked",
    ),
    (
        "seccomp unconfined",
        lambda d: pod_context(d).update(seccompProfile={"type": "Unconfined"}),
        "Seccomp",
        Level.BASELINE,
        f"{P}.securityContext.seccompProfile.type is Unconfined",
    ),
    (
        "an unsafe sysctl",
        lambda d: pod_context(d).update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "Sysctls",
        Level.BASELINE,
        f"{P}.securityContext.sysctls[kernel.msgmax] is outside the safe set",
    ),
    (
        "an nfs volume",
        lambda d: pod(d)["volumes"].append({"name": "share", "nfs": {"server": "x", "path": "/"}}),
        "Volume Types",
        Level.RESTRICTED,
        f"{P}.volumes[share].nfs is a volume type outside the allowed list",
    ),
    (
        "privilege escalation unset",
        lambda d: context(d).pop("allowPrivilegeEscalation"),
        "Privilege Escalation",
        Level.RESTRICTED,
        f"{C}.securityContext.allowPrivilegeEscalation is not false",
    ),
    (
        "privilege escalation true",
        lambda d: context(d).update(allowPrivilegeEscalation=True),
        "Privilege Escalation",
        Level.RESTRICTED,
        f"{C}.securityContext.allowPrivilegeEscalation is not false",
    ),
    (
        "runAsNonRoot unset everywhere",
        lambda d: pod_context(d).pop("runAsNonRoot"),
        "Running as Non-root",
        Level.RESTRICTED,
        f"{C}.securityContext.runAsNonRoot is unset and {SPEC}.securityContext.runAsNonRoot "
        "is not true",
    ),
    (
        "runAsNonRoot false on the container, true on the pod",
        lambda d: context(d).update(runAsNonRoot=False),
        "Running as Non-root",
        Level.RESTRICTED,
        f"{C}.securityContext.runAsNonRoot is not true",
    ),
    (
        "runAsUser 0 on the pod",
        lambda d: pod_context(d).update(runAsUser=0),
        "Running as Non-root user",
        Level.RESTRICTED,
        f"{P}.securityContext.runAsUser is 0",
    ),
    (
        "runAsUser 0 on the container",
        lambda d: context(d).update(runAsUser=0),
        "Running as Non-root user",
        Level.RESTRICTED,
        f"{C}.securityContext.runAsUser is 0",
    ),
    (
        "seccomp unset everywhere",
        lambda d: pod_context(d).pop("seccompProfile"),
        "Seccomp",
        Level.RESTRICTED,
        f"{C}.securityContext.seccompProfile.type is unset",
    ),
    (
        "capabilities not dropped",
        lambda d: context(d).pop("capabilities"),
        "Capabilities",
        Level.RESTRICTED,
        f"{C}.securityContext.capabilities.drop does not have ALL",
    ),
    (
        "a default capability added",
        lambda d: context(d)["capabilities"].update(add=["CHOWN"]),
        "Capabilities",
        Level.RESTRICTED,
        f"{C}.securityContext.capabilities.add has CHOWN (only NET_BIND_SERVICE may be added)",
    ),
]

LOWER = {Level.BASELINE: [Level.PRIVILEGED], Level.RESTRICTED: [Level.PRIVILEGED, Level.BASELINE]}
HIGHER = {Level.BASELINE: [Level.BASELINE, Level.RESTRICTED], Level.RESTRICTED: [Level.RESTRICTED]}


def test_a_hardened_deployment_passes_every_level() -> None:
    for level in Level:
        assert violations([deployment()], level) == []


@pytest.mark.parametrize(("what", "change", "control", "lowest", "sentence"), REFUSED)
def test_each_control_refuses_at_its_level_and_above(
    what: str, change: Change, control: str, lowest: Level, sentence: str
) -> None:
    d = changed(change)
    for level in HIGHER[lowest]:
        found = violations([d], level)
        assert controls(found) == [control], (what, found)
        (message,) = found
        assert message.startswith(sentence), message
        assert f"which the {level} Pod Security Standard does not allow ({control})" in message


@pytest.mark.parametrize(("what", "change", "control", "lowest", "sentence"), REFUSED)
def test_each_control_allows_it_below_its_level(
    what: str, change: Change, control: str, lowest: Level, sentence: str
) -> None:
    d = changed(change)
    for level in LOWER[lowest]:
        assert violations([d], level) == [], what


# What each control lets through, at the strictest level that allows it.
ALLOWED: list[tuple[str, Change, Level]] = [
    ("hostProcess false", lambda d: context(d).update(windowsOptions={"hostProcess": False}), Level.RESTRICTED),
    ("host namespaces false", lambda d: pod(d).update(hostNetwork=False, hostPID=False, hostIPC=False), Level.RESTRICTED),
    ("privileged false", lambda d: context(d).update(privileged=False), Level.RESTRICTED),
    ("default capabilities", lambda d: context(d).update(capabilities={"add": ["CHOWN", "KILL", "NET_BIND_SERVICE"]}), Level.BASELINE),
    ("NET_BIND_SERVICE after dropping ALL", lambda d: context(d)["capabilities"].update(add=["NET_BIND_SERVICE"]), Level.RESTRICTED),
    ("hostPort 0", lambda d: app(d)["ports"][0].update(hostPort=0), Level.RESTRICTED),
    ("probe without a host", lambda d: app(d).update(readinessProbe={"httpGet": {"path": "/", "port": 80, "host": ""}}), Level.RESTRICTED),
    ("AppArmor RuntimeDefault and Localhost", lambda d: (pod_context(d).update(appArmorProfile={"type": "RuntimeDefault"}), context(d).update(appArmorProfile={"type": "Localhost", "localhostProfile": "p"})), Level.RESTRICTED),
    ("AppArmor annotations", lambda d: d["spec"]["template"]["metadata"].update(annotations={"container.apparmor.security.beta.kubernetes.io/app": "localhost/p", "container.apparmor.security.beta.kubernetes.io/b": "runtime/default"}), Level.RESTRICTED),
    ("SELinux container types and a level", lambda d: (pod_context(d).update(seLinuxOptions={"type": "container_t", "level": "s0:c1"}), context(d).update(seLinuxOptions={"type": "container_engine_t"})), Level.RESTRICTED),
    ("procMount Default", lambda d: context(d).update(procMount="Default"), Level.RESTRICTED),
    ("seccomp Localhost", lambda d: context(d).update(seccompProfile={"type": "Localhost", "localhostProfile": "p.json"}), Level.RESTRICTED),
    ("safe sysctls", lambda d: pod_context(d).update(sysctls=[{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}, {"name": "kernel/shm_rmid_forced", "value": "1"}]), Level.RESTRICTED),
    ("the allowed volume types", lambda d: pod(d).update(volumes=[{"name": n, t: {}} for n, t in [("a", "emptyDir"), ("b", "secret"), ("c", "projected"), ("d", "downwardAPI"), ("e", "persistentVolumeClaim"), ("f", "csi"), ("g", "ephemeral"), ("h", "image")]] + [{"name": "defaulted"}]), Level.RESTRICTED),
    ("an nfs volume", lambda d: pod(d)["volumes"].append({"name": "share", "nfs": {"server": "x"}}), Level.BASELINE),
    ("runAsNonRoot on every container only", lambda d: (pod_context(d).pop("runAsNonRoot"), context(d).update(runAsNonRoot=True)), Level.RESTRICTED),
    ("runAsUser non-zero", lambda d: (pod_context(d).update(runAsUser=1000), context(d).update(runAsUser=1001)), Level.RESTRICTED),
    ("seccomp on every container only", lambda d: (pod_context(d).pop("seccompProfile"), context(d).update(seccompProfile={"type": "RuntimeDefault"})), Level.RESTRICTED),
    ("privilege escalation unset", lambda d: context(d).pop("allowPrivilegeEscalation"), Level.BASELINE),
    ("running as root", lambda d: (pod(d).update(securityContext={}), context(d).update(runAsUser=0)), Level.BASELINE),
]  # fmt: skip


@pytest.mark.parametrize(("what", "change", "level"), ALLOWED)
def test_each_control_lets_through_what_the_standard_allows(
    what: str, change: Change, level: Level
) -> None:
    assert violations([changed(change)], level) == [], what


def test_privileged_allows_everything_in_a_pod() -> None:
    objects = [changed(change) for _, change, *_ in REFUSED]
    assert violations(objects, Level.PRIVILEGED) == []
    assert len(violations(objects, Level.RESTRICTED)) == len(REFUSED)


def test_restricted_reports_capabilities_once_not_also_as_baseline() -> None:
    d = changed(lambda d: context(d)["capabilities"].update(add=["SYS_ADMIN"]))
    (message,) = violations([d], Level.RESTRICTED)
    assert "only NET_BIND_SERVICE may be added" in message
    (message,) = violations([d], Level.BASELINE)
    assert "beyond the default set" in message


def test_init_and_ephemeral_containers_are_checked_too() -> None:
    d = deployment()
    pod(d)["initContainers"] = [{"name": "migrate", "securityContext": {"privileged": True}}]
    pod(d)["ephemeralContainers"] = [
        {"name": "debug", "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}}
    ]
    assert violations([d], Level.BASELINE) == [
        f"{P}.initContainers[migrate].securityContext.privileged is true, which the baseline "
        "Pod Security Standard does not allow (Privileged Containers)",
        f"{P}.ephemeralContainers[debug].securityContext.capabilities.add has SYS_PTRACE, "
        "beyond the default set, which the baseline Pod Security Standard does not allow "
        "(Capabilities)",
    ]
    restricted = violations([d], Level.RESTRICTED)
    assert any(
        "initContainers[migrate].securityContext.allowPrivilegeEscalation" in m for m in restricted
    )
    assert any(
        "ephemeralContainers[debug].securityContext.capabilities.drop" in m for m in restricted
    )


def test_a_container_inherits_the_pods_settings_unless_it_sets_its_own() -> None:
    # The pod's runAsNonRoot and seccomp cover every container; a container's own value wins.
    d = deployment()
    pod(d)["containers"].append(
        {
            "name": "sidecar",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "Unconfined"},
            },
        }
    )
    assert controls(violations([d], Level.RESTRICTED)) == ["Seccomp"]
    assert controls(violations([d], Level.BASELINE)) == ["Seccomp"]
    # Unset on the pod: each container must set it.
    pod_context(d).pop("seccompProfile")
    found = violations([d], Level.RESTRICTED)
    assert [m.split(",")[0].split(": ")[1] for m in found] == [
        f"{SPEC}.containers[app].securityContext.seccompProfile.type is unset and "
        f"{SPEC}.securityContext.seccompProfile.type is not RuntimeDefault or Localhost",
        f"{SPEC}.containers[sidecar].securityContext.seccompProfile.type is Unconfined",
    ]


def test_a_user_namespace_pod_may_run_as_root_inside() -> None:
    d = changed(lambda d: pod(d).update(securityContext={}, hostUsers=False))
    context(d).update(runAsUser=0, procMount="Unmasked", seccompProfile={"type": "RuntimeDefault"})
    assert violations([d], Level.BASELINE) == []
    # Restricted still refuses unmasking /proc.
    assert controls(violations([d], Level.RESTRICTED)) == ["/proc Mount Type"]


def test_a_windows_pod_is_spared_the_linux_only_restrictions() -> None:
    d = changed(
        lambda d: (pod_context(d).pop("seccompProfile"), pod(d).update(os={"name": "windows"}))
    )
    app(d)["securityContext"] = {"capabilities": {"add": ["SYS_ADMIN"]}}
    pod_context(d)["runAsNonRoot"] = True
    assert violations([d], Level.RESTRICTED) == []
    assert controls(violations([d], Level.BASELINE)) == ["Capabilities"]


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Pod", "spec"),
        ("ReplicaSet", "spec.template.spec"),
        ("ReplicationController", "spec.template.spec"),
        ("StatefulSet", "spec.template.spec"),
        ("DaemonSet", "spec.template.spec"),
        ("Job", "spec.template.spec"),
        ("CronJob", "spec.jobTemplate.spec.template.spec"),
    ],
)
def test_every_kind_with_a_pod_template_is_checked(kind: str, path: str) -> None:
    spec = {"hostNetwork": True, "containers": [{"name": "c"}]}
    obj: Obj = {"kind": kind, "metadata": {"name": "x"}}
    node = obj
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = spec
    assert violations([obj], Level.BASELINE) == [
        f"{kind} 'x': {path}.hostNetwork is true, which the baseline Pod Security Standard "
        "does not allow (Host Namespaces)"
    ]


def test_objects_without_pods_pass() -> None:
    objects: list[Obj] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"hostNetwork": True},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c"},
            "data": {"privileged": "true"},
        },
    ]
    assert violations(objects, Level.RESTRICTED) == []


def test_every_violation_of_every_object_is_listed_in_order() -> None:
    a = changed(lambda d: pod(d).update(hostPID=True, hostIPC=True))
    b = changed(lambda d: context(d).update(privileged=True))
    b["metadata"]["name"] = "api"
    found = violations([a, b], Level.BASELINE)
    assert [m.split(":")[0] for m in found] == ["Deployment 'web'"] * 2 + ["Deployment 'api'"]
    assert controls(found) == ["Host Namespaces"] * 2 + ["Privileged Containers"]


# --- RBAC --------------------------------------------------------------------------------

RBAC_V1 = "rbac.authorization.k8s.io/v1"


def role(rules: list[Obj], kind: str = "Role") -> Obj:
    return {"apiVersion": RBAC_V1, "kind": kind, "metadata": {"name": "reader"}, "rules": rules}


def binding(ref_kind: str, ref_name: str, kind: str = "RoleBinding") -> Obj:
    return {
        "apiVersion": RBAC_V1,
        "kind": kind,
        "metadata": {"name": "grant"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref_name},
        "subjects": [{"kind": "ServiceAccount", "name": "web"}],
    }


READER = role([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}])


@pytest.mark.parametrize(
    "obj",
    [READER, binding("Role", "reader"), role([], "ClusterRole")],
    ids=["Role", "RoleBinding", "ClusterRole"],
)
def test_rbac_objects_are_refused_unless_the_environment_allows_them(obj: Obj) -> None:
    for level in Level:
        (message,) = violations([obj], level)
        assert message == (
            f"{obj['kind']} '{obj['metadata']['name']}': the environment does not allow objects "
            "of the rbac.authorization.k8s.io API group (RBAC)"
        )
        assert violations([obj], level, allow_rbac=True) == []


@pytest.mark.parametrize("name", ["view", "edit", "admin", "my-own"])
def test_a_binding_to_a_cluster_role_is_refused_always(name: str) -> None:
    (message,) = violations([binding("ClusterRole", name)], Level.PRIVILEGED, allow_rbac=True)
    assert message == (
        f"RoleBinding 'grant': roleRef binds the ClusterRole {name}: a binding to a ClusterRole "
        "grants rights the template's namespace does not own, which no environment allows (RBAC)"
    )
    assert len(violations([binding("ClusterRole", name)], Level.PRIVILEGED)) == 2


def test_a_binding_to_cluster_admin_says_so() -> None:
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        (message,) = violations(
            [binding("ClusterRole", "cluster-admin", kind)], Level.BASELINE, allow_rbac=True
        )
        assert "the ClusterRole cluster-admin, every right on the whole cluster" in message
        assert (
            "a binding to a ClusterRole grants rights the template's namespace does not own"
            in message
        )
    assert "in every namespace" in message


def test_a_binding_to_everyone_is_refused_always() -> None:
    grant = binding("Role", "reader")
    grant["subjects"] = [{"kind": "Group", "name": "system:unauthenticated"}]
    (message,) = violations([grant], Level.BASELINE, allow_rbac=True)
    assert message.startswith("RoleBinding 'grant': subjects[0] is system:unauthenticated")


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ({"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}, "rules[0].verbs has *"),
        ({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}, "rules[0].resources has *"),
        ({"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"]}, "rules[0].resources has *"),
        ({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}, "rules[0].verbs has escalate"),
        ({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"]}, "rules[0].verbs has bind"),
        ({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}, "rules[0].verbs has impersonate"),
    ],
)  # fmt: skip
def test_a_role_with_wildcard_or_escalating_rights_is_refused_always(rule: Obj, says: str) -> None:
    for kind in ("Role", "ClusterRole"):
        (message,) = violations([role([rule], kind)], Level.BASELINE, allow_rbac=True)
        assert message.startswith(f"{kind} 'reader': {says}")
        assert message.endswith("which no environment allows (RBAC)")


def test_a_cluster_role_that_aggregates_into_the_builtin_roles_is_refused_always() -> None:
    aggregated = role([], "ClusterRole")
    aggregated["metadata"]["labels"] = {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}
    (message,) = violations([aggregated], Level.BASELINE, allow_rbac=True)
    assert "metadata.labels[rbac.authorization.k8s.io/aggregate-to-edit]" in message


def test_rbac_is_told_by_its_api_group_not_its_kind() -> None:
    custom = {"apiVersion": "example.com/v1", "kind": "RoleBinding", "metadata": {"name": "x"}}
    assert violations([custom], Level.RESTRICTED) == []


# --- malformed input ---------------------------------------------------------------------

MALFORMED: list[Any] = [
    None,
    "text",
    [],
    {},
    {"kind": "Deployment"},
    {"kind": "Deployment", "spec": "nope"},
    {"kind": "Deployment", "spec": {"template": []}},
    {"kind": "Deployment", "spec": {"template": {"spec": None}}},
    {"kind": "Pod", "spec": {"containers": "app"}},
    {"kind": "Pod", "spec": {"containers": [None, 1, "x", {"securityContext": "x"}]}},
    {"kind": "Pod", "spec": {"containers": [{"securityContext": {"capabilities": {"add": "SYS_ADMIN", "drop": "ALL"}}}]}},
    {"kind": "Pod", "spec": {"containers": [{"securityContext": {"capabilities": {"add": [["x"], {"a": 1}]}}}]}},
    {"kind": "Pod", "spec": {"containers": [{"ports": [None, {"hostPort": [1]}], "lifecycle": "x", "livenessProbe": []}]}},
    {"kind": "Pod", "spec": {"volumes": [None, {"name": ["a"], "hostPath": 1}], "securityContext": {"sysctls": [None, {"name": {}}]}}},
    {"kind": "Pod", "spec": {"securityContext": {"seLinuxOptions": {"type": ["x"]}, "seccompProfile": {"type": {}}, "appArmorProfile": "x"}}},
    {"kind": "Pod", "metadata": {"annotations": {1: 2, "container.apparmor.security.beta.kubernetes.io/x": None}}, "spec": {}},
    {"kind": ["Pod"], "metadata": [], "spec": {}},
    {"kind": {"a": 1}, "apiVersion": {"b": 2}},
    {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": "x"}}}},
    {"apiVersion": RBAC_V1, "kind": "Role", "rules": "all"},
    {"apiVersion": RBAC_V1, "kind": "Role", "rules": [None, {"verbs": "*", "resources": [None]}]},
    {"apiVersion": RBAC_V1, "kind": "RoleBinding", "roleRef": "cluster-admin", "subjects": [None, "x", {"name": ["a"]}]},
    {"apiVersion": RBAC_V1, "kind": "ClusterRole", "metadata": {"labels": [1]}},
    {"apiVersion": RBAC_V1, "kind": ["ClusterRoleBinding"]},
]  # fmt: skip


@pytest.mark.parametrize("obj", MALFORMED)
def test_malformed_objects_never_raise(obj: Any) -> None:
    for level in Level:
        for allow in (False, True):
            found = violations([obj], level, allow_rbac=allow)
            assert all(isinstance(m, str) for m in found)


def test_a_malformed_pod_is_still_checked_where_it_can_be() -> None:
    obj = {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"hostPID": True, "containers": "x"}}
    assert controls(violations([obj], Level.RESTRICTED)) == ["Host Namespaces"]
    nameless = {"kind": "Pod", "spec": {"containers": [{"securityContext": {"privileged": True}}]}}
    (message,) = violations([nameless], Level.BASELINE)
    assert message.startswith("Pod (no name): spec.containers[0].securityContext.privileged")


def test_the_input_is_not_changed() -> None:
    d = changed(lambda d: (pod(d).update(hostPID=True), context(d).pop("capabilities")))
    before = copy.deepcopy(d)
    violations([d], Level.RESTRICTED)
    assert d == before


# Values the checks compare against, beside any others: so that random input reaches the
# branches behind them.
WORDS = st.sampled_from(
    ["ALL", "NET_BIND_SERVICE", "SYS_ADMIN", "RuntimeDefault", "Localhost", "Unconfined",
     "Default", "Unmasked", "windows", "*", "bind", "ClusterRole", "cluster-admin",
     "container_t", "kernel.msgmax", "net.ipv4.tcp_syncookies", "unconfined", RBAC_V1,
     "container.apparmor.security.beta.kubernetes.io/app", "system:anonymous"]
)  # fmt: skip
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
ANY = st.recursive(
    SCALARS | WORDS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=4) | WORDS, children, max_size=3)
    ),
    max_leaves=8,
)

Path = tuple[str | int, ...]
CONTEXT_PATHS: list[Path] = [
    (), ("privileged",), ("procMount",), ("runAsNonRoot",), ("runAsUser",),
    ("allowPrivilegeEscalation",), ("capabilities",), ("capabilities", "add"),
    ("capabilities", "add", 0), ("capabilities", "drop"), ("capabilities", "drop", 0),
    ("seccompProfile",), ("seccompProfile", "type"), ("appArmorProfile",),
    ("appArmorProfile", "type"), ("seLinuxOptions",), ("seLinuxOptions", "type"),
    ("seLinuxOptions", "user"), ("windowsOptions",), ("windowsOptions", "hostProcess"),
    ("sysctls",), ("sysctls", 0), ("sysctls", 0, "name"),
]  # fmt: skip
CONTAINER_PATHS: list[Path] = [
    (), ("name",), ("ports",), ("ports", 0), ("ports", 0, "name"), ("ports", 0, "hostPort"),
    ("livenessProbe",), ("livenessProbe", "httpGet"), ("livenessProbe", "httpGet", "host"),
    ("lifecycle",), ("lifecycle", "preStop"), ("lifecycle", "preStop", "tcpSocket", "host"),
    *(("securityContext", *p) for p in CONTEXT_PATHS),
]  # fmt: skip
POD_SPEC: Path = ("spec", "template", "spec")
POD_PATHS: list[Path] = [
    ("kind",), ("metadata",), ("metadata", "name"), ("spec",), ("spec", "template"),
    ("spec", "template", "metadata", "annotations"),
    ("spec", "template", "metadata", "annotations", "container.apparmor.security.beta.kubernetes.io/app"),
    *((*POD_SPEC, p) for p in ("hostNetwork", "hostUsers", "os", "volumes", "initContainers")),
    (*POD_SPEC, "os", "name"), (*POD_SPEC, "volumes", 0), (*POD_SPEC, "volumes", 0, "name"),
    (*POD_SPEC, "volumes", 0, "hostPath"), (*POD_SPEC, "volumes", 0, "nfs"),
    *((*POD_SPEC, "securityContext", *p) for p in CONTEXT_PATHS),
    *((*POD_SPEC, "containers", 0, *p) for p in CONTAINER_PATHS),
    *((*POD_SPEC, "ephemeralContainers", 0, *p) for p in CONTAINER_PATHS),
]  # fmt: skip
RBAC_PATHS: list[Path] = [
    ("kind",), ("apiVersion",), ("metadata", "labels"),
    ("metadata", "labels", "rbac.authorization.k8s.io/aggregate-to-edit"),
    ("roleRef",), ("roleRef", "kind"), ("roleRef", "name"), ("subjects",), ("subjects", 0),
    ("subjects", 0, "name"), ("rules",), ("rules", 0), ("rules", 0, "verbs"),
    ("rules", 0, "verbs", 0), ("rules", 0, "resources"), ("rules", 0, "resources", 0),
]  # fmt: skip


def put(node: Any, path: Path, value: Any) -> Any:
    """``node`` with ``value`` at ``path``, made into the dicts and lists the path crosses."""
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(key, int):
        items = list(node) if isinstance(node, list) else []
        items += [{}] * (key + 1 - len(items))
        items[key] = put(items[key], rest, value)
        return items
    mapping = dict(node) if isinstance(node, dict) else {}
    mapping[key] = put(mapping.get(key), rest, value)
    return mapping


@st.composite
def objects(draw: st.DrawFn) -> Any:
    """A valid object with anything at a few of the places the checks read."""
    if draw(st.integers(0, 9)) == 0:
        return draw(ANY)
    base, paths = draw(
        st.sampled_from(
            [
                (deployment(), POD_PATHS),
                (binding("ClusterRole", "edit"), RBAC_PATHS),
                (role([{"verbs": ["get"], "resources": ["pods"]}], "ClusterRole"), RBAC_PATHS),
            ]
        )
    )
    obj = copy.deepcopy(base)
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=8)):
        obj = put(obj, path, draw(ANY))
    return obj


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    items=st.lists(objects(), min_size=1, max_size=2),
    level=st.sampled_from(list(Level)),
    allow=st.booleans(),
)
def test_no_nested_input_makes_the_check_raise(items: list[Any], level: Level, allow: bool) -> None:
    found = violations(items, level, allow_rbac=allow)
    assert all(isinstance(m, str) and m for m in found)


ODD: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    "",
    "x",
    [],
    {},
    [None],
    [{}],
    [[]],
    [["x"]],
    {"a": 1},
    {1: 2},
]


def test_any_odd_value_at_any_place_the_checks_read_never_raises() -> None:
    # Every place, every kind of value: what the random search above may miss.
    bases = [
        (deployment(), POD_PATHS),
        (binding("ClusterRole", "edit"), RBAC_PATHS),
        (role([{"verbs": ["get"], "resources": ["pods"]}], "ClusterRole"), RBAC_PATHS),
    ]
    for base, paths in bases:
        for path in paths:
            for value in ODD:
                obj = put(copy.deepcopy(base), path, value)
                for level in Level:
                    for allow in (False, True):
                        assert all(
                            isinstance(m, str) for m in violations([obj], level, allow_rbac=allow)
                        )
