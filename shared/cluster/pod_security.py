"""An environment's policy on a release's objects: the Pod Security Standards and RBAC.

Kubernetes' Pod Security Standards (https://kubernetes.io/docs/concepts/security/
pod-security-standards/) in three levels: ``privileged`` allows everything,
``baseline`` refuses the known privilege escalations, ``restricted`` adds the
hardening of current best practice. The checks follow the PodSecurity admission
plugin of Kubernetes 1.35 control by control, with the same inheritance (a
container's field left unset takes the pod's), the same relaxations (pods in a
user namespace, ``hostUsers: false``; Windows pods at ``restricted``) and the
same overrides (at ``restricted`` the stricter capabilities, seccomp and /proc
checks replace the baseline ones), so that what passes here also passes a
namespace labelled ``pod-security.kubernetes.io/enforce=<level>``, and a refusal
is known before anything is applied, one sentence per way each object breaks it.

RBAC objects are the other way a template gains rights. They are refused unless
the environment allows them; and some never pass: a binding to a ClusterRole
(its rights are not the namespace's to give), a Role with wildcard rights or the
verbs that get around RBAC itself (``escalate``, ``bind``, ``impersonate``), a
binding to everyone, a ClusterRole that adds itself to the aggregated roles.

Pure: no I/O. Manifests are what people wrote, so every shape is tolerated:
what is not where the API puts it is skipped, nothing raises.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Level(StrEnum):
    PRIVILEGED = "privileged"
    BASELINE = "baseline"
    RESTRICTED = "restricted"


# The Pod Security Standards' names for their controls, as the page names them.
HOST_PROCESS = "HostProcess"
HOST_NAMESPACES = "Host Namespaces"
PRIVILEGED_CONTAINERS = "Privileged Containers"
CAPABILITIES = "Capabilities"
HOST_PATH_VOLUMES = "HostPath Volumes"
HOST_PORTS = "Host Ports"
HOST_PROBES = "Host Probes / Lifecycle Hooks"
APPARMOR = "AppArmor"
SELINUX = "SELinux"
PROC_MOUNT = "/proc Mount Type"
SECCOMP = "Seccomp"
SYSCTLS = "Sysctls"
VOLUME_TYPES = "Volume Types"
PRIVILEGE_ESCALATION = "Privilege Escalation"
NON_ROOT = "Running as Non-root"
NON_ROOT_USER = "Running as Non-root user"
RBAC = "RBAC"

# Where each kind keeps its pod template: the path to the pod's ``spec``.
POD_SPECS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_FIELDS = ("containers", "initContainers", "ephemeralContainers")

# Docker's default set, which a container may add to at baseline.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# Namespaced and isolated from other pods on the node (the 1.32 list).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)
SELINUX_TYPES = ("", "container_t", "container_init_t", "container_kvm_t", "container_engine_t")
CONFINED = ("RuntimeDefault", "Localhost")
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
# The volume sources a restricted pod may use: the cluster's own, or a PersistentVolume's.
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
HANDLERS = ("postStart", "preStop")

RBAC_GROUP = "rbac.authorization.k8s.io"
BINDINGS = ("RoleBinding", "ClusterRoleBinding")
ROLES = ("Role", "ClusterRole")
# Verbs that get around RBAC: grant rights one lacks, bind roles one does not hold, act as
# someone else.
ESCALATING_VERBS = ("escalate", "bind", "impersonate")
EVERYONE = ("system:authenticated", "system:unauthenticated", "system:anonymous")
AGGREGATE_LABEL = "rbac.authorization.k8s.io/aggregate-to-"


def violations(
    objects: list[dict[str, Any]], level: Level, *, allow_rbac: bool = False
) -> list[str]:
    """Every way the objects break the environment's policy, one sentence each (empty: none)."""
    found: list[str] = []
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        where = _where(obj)
        found += [f"{where}: {why} ({RBAC})" for why in _rbac(obj, allow_rbac=allow_rbac)]
        pod = _pod(obj)
        if pod is None or level == Level.PRIVILEGED:
            continue
        found += [
            f"{where}: {finding}, which the {level} Pod Security Standard does not allow "
            f"({control})"
            for finding, control in _pod_findings(pod, level)
        ]
    return found


# --- the pod ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Container:
    path: str  # "spec.template.spec.containers[app]"
    context: dict[str, Any]  # its securityContext ({} when unset)
    body: dict[str, Any]


@dataclass(frozen=True)
class _Pod:
    path: str  # "spec.template.spec"
    spec: dict[str, Any]
    context: dict[str, Any]  # the pod's securityContext ({} when unset)
    annotations_path: str
    annotations: dict[str, Any]
    containers: list[_Container]

    @property
    def windows(self) -> bool:
        return _dict(self.spec.get("os")).get("name") == "windows"

    @property
    def user_namespace(self) -> bool:
        """A pod in a user namespace: root inside is not root on the node."""
        return self.spec.get("hostUsers") is False


Finding = tuple[str, str]  # (the field and what is wrong with it, the control)


def _pod(obj: dict[str, Any]) -> _Pod | None:
    kind = obj.get("kind")
    keys = POD_SPECS.get(kind) if isinstance(kind, str) else None
    if keys is None:
        return None
    spec = _at(obj, keys)
    template = _at(obj, keys[:-1]) if len(keys) > 1 else obj
    if not isinstance(spec, dict) or not isinstance(template, dict):
        return None
    path = ".".join(keys)
    metadata_path = ".".join((*keys[:-1], "metadata"))
    containers = [
        _Container(f"{path}.{field}[{_label(c, i)}]", _dict(c.get("securityContext")), c)
        for field in CONTAINER_FIELDS
        for i, c in enumerate(_list(spec.get(field)))
        if isinstance(c, dict)
    ]
    return _Pod(
        path=path,
        spec=spec,
        context=_dict(spec.get("securityContext")),
        annotations_path=f"{metadata_path}.annotations",
        annotations=_dict(_dict(template.get("metadata")).get("annotations")),
        containers=containers,
    )


def _pod_findings(pod: _Pod, level: Level) -> Iterator[Finding]:
    restricted = level == Level.RESTRICTED
    yield from _host_process(pod)
    yield from _host_namespaces(pod)
    yield from _privileged(pod)
    if not restricted:  # at restricted, the stricter check below
        yield from _baseline_capabilities(pod)
    yield from _host_path(pod)
    yield from _host_ports(pod)
    yield from _host_probes(pod)
    yield from _apparmor(pod)
    yield from _selinux(pod)
    # Unmasked /proc is no escape from a user namespace, but restricted refuses it anyway.
    if restricted or not pod.user_namespace:
        yield from _proc_mount(pod)
    if not restricted:
        yield from _baseline_seccomp(pod)
    yield from _sysctls(pod)
    if not restricted:
        return
    yield from _volume_types(pod)
    if not pod.user_namespace:
        yield from _non_root(pod)
        yield from _non_root_user(pod)
    # Windows has no setuid, seccomp or Linux capabilities to restrict.
    if not pod.windows:
        yield from _privilege_escalation(pod)
        yield from _restricted_seccomp(pod)
        yield from _restricted_capabilities(pod)


# --- baseline --------------------------------------------------------------------------


def _host_process(pod: _Pod) -> Iterator[Finding]:
    for path, context in _contexts(pod):
        if _set(_dict(context.get("windowsOptions")).get("hostProcess")):
            yield f"{path}.windowsOptions.hostProcess is true", HOST_PROCESS


def _host_namespaces(pod: _Pod) -> Iterator[Finding]:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if _set(pod.spec.get(field)):
            yield f"{pod.path}.{field} is true", HOST_NAMESPACES


def _privileged(pod: _Pod) -> Iterator[Finding]:
    for c in pod.containers:
        if _set(c.context.get("privileged")):
            yield f"{c.path}.securityContext.privileged is true", PRIVILEGED_CONTAINERS


def _baseline_capabilities(pod: _Pod) -> Iterator[Finding]:
    for c in pod.containers:
        added = _list(_dict(c.context.get("capabilities")).get("add"))
        beyond = [a for a in added if not (isinstance(a, str) and a in BASELINE_CAPABILITIES)]
        if beyond:
            yield (
                f"{c.path}.securityContext.capabilities.add has {_names(beyond)}, "
                "beyond the default set",
                CAPABILITIES,
            )


def _host_path(pod: _Pod) -> Iterator[Finding]:
    for i, volume in enumerate(_list(pod.spec.get("volumes"))):
        if isinstance(volume, dict) and volume.get("hostPath") is not None:
            yield (
                f"{pod.path}.volumes[{_label(volume, i)}].hostPath mounts a path of the node",
                HOST_PATH_VOLUMES,
            )


def _host_ports(pod: _Pod) -> Iterator[Finding]:
    for c in pod.containers:
        for i, port in enumerate(_list(c.body.get("ports"))):
            if isinstance(port, dict) and port.get("hostPort") not in (None, 0):
                yield (
                    f"{c.path}.ports[{_label(port, i)}].hostPort is {port['hostPort']}",
                    HOST_PORTS,
                )


def _host_probes(pod: _Pod) -> Iterator[Finding]:
    for c in pod.containers:
        handlers = [(name, _dict(c.body.get(name))) for name in PROBES]
        lifecycle = _dict(c.body.get("lifecycle"))
        handlers += [(f"lifecycle.{name}", _dict(lifecycle.get(name))) for name in HANDLERS]
        for name, handler in handlers:
            for action in ("httpGet", "tcpSocket"):
                host = _dict(handler.get(action)).get("host")
                if host not in (None, ""):
                    yield f"{c.path}.{name}.{action}.host is {host}", HOST_PROBES


def _apparmor(pod: _Pod) -> Iterator[Finding]:
    for path, context in _contexts(pod):
        profile = context.get("appArmorProfile")
        if isinstance(profile, dict) and profile.get("type") not in CONFINED:
            yield (
                f"{path}.appArmorProfile.type is {_shown(profile.get('type'))}",
                APPARMOR,
            )
    for key, value in pod.annotations.items():
        if not (isinstance(key, str) and key.startswith(APPARMOR_ANNOTATION)):
            continue
        if not (
            isinstance(value, str)
            and (value in ("", "runtime/default") or value.startswith("localhost/"))
        ):
            yield f"{pod.annotations_path}[{key}] is {_shown(value)}", APPARMOR


def _selinux(pod: _Pod) -> Iterator[Finding]:
    for path, context in _contexts(pod):
        options = context.get("seLinuxOptions")
        if not isinstance(options, dict):
            continue
        kind = options.get("type")
        if kind is not None and kind not in SELINUX_TYPES:
            yield f"{path}.seLinuxOptions.type is {_shown(kind)}", SELINUX
        for field in ("user", "role"):
            if options.get(field) not in (None, ""):
                yield f"{path}.seLinuxOptions.{field} is set", SELINUX


def _proc_mount(pod: _Pod) -> Iterator[Finding]:
    for c in pod.containers:
        mount = c.context.get("procMount")
        if mount not in (None, "Default"):
            yield f"{c.path}.securityContext.procMount is {_shown(mount)}", PROC_MOUNT


def _baseline_seccomp(pod: _Pod) -> Iterator[Finding]:
    for path, context in _contexts(pod):
        profile = context.get("seccompProfile")
        if isinstance(profile, dict) and profile.get("type") not in CONFINED:
            yield f"{path}.seccompProfile.type is {_shown(profile.get('type'))}", SECCOMP


def _sysctls(pod: _Pod) -> Iterator[Finding]:
    for i, sysctl in enumerate(_list(pod.context.get("sysctls"))):
        name = _dict(sysctl).get("name")
        # The kernel's names may be written with slashes (kernel/shm_rmid_forced).
        if not (isinstance(name, str) and name.replace("/", ".") in SAFE_SYSCTLS):
            label = name if isinstance(name, str) and name else i
            yield (
                f"{pod.path}.securityContext.sysctls[{label}] is outside the safe set",
                SYSCTLS,
            )


# --- restricted ------------------------------------------------------------------------


def _volume_types(pod: _Pod) -> Iterator[Finding]:
    for i, volume in enumerate(_list(pod.spec.get("volumes"))):
        if not isinstance(volume, dict):
            continue
        for source, value in volume.items():
            # hostPath has its own control; a volume with no source is an emptyDir.
            if source in ("name", "hostPath") or value is None:
                continue
            if not (isinstance(source, str) and source in RESTRICTED_VOLUMES):
                yield (
                    f"{pod.path}.volumes[{_label(volume, i)}].{source} is a volume type "
                    "outside the allowed list",
                    VOLUME_TYPES,
                )


def _privilege_escalation(pod: _Pod) -> Iterator[Finding]:
    for c in pod.containers:
        if c.context.get("allowPrivilegeEscalation") is not False:
            yield (
                f"{c.path}.securityContext.allowPrivilegeEscalation is not false",
                PRIVILEGE_ESCALATION,
            )


def _non_root(pod: _Pod) -> Iterator[Finding]:
    pod_value = pod.context.get("runAsNonRoot")
    if pod_value is not None and pod_value is not True:
        yield f"{pod.path}.securityContext.runAsNonRoot is not true", NON_ROOT
    for c in pod.containers:
        value = c.context.get("runAsNonRoot")
        # Unset takes the pod's value: refused above when false, here when unset too.
        if value is None and pod_value is None:
            yield (
                f"{c.path}.securityContext.runAsNonRoot is unset and "
                f"{pod.path}.securityContext.runAsNonRoot is not true",
                NON_ROOT,
            )
        elif value is not None and value is not True:
            yield f"{c.path}.securityContext.runAsNonRoot is not true", NON_ROOT


def _non_root_user(pod: _Pod) -> Iterator[Finding]:
    for path, context in _contexts(pod):
        user = context.get("runAsUser")
        if isinstance(user, int | float) and user == 0:
            yield f"{path}.runAsUser is 0 (root)", NON_ROOT_USER


def _restricted_seccomp(pod: _Pod) -> Iterator[Finding]:
    profile = pod.context.get("seccompProfile")
    if isinstance(profile, dict) and profile.get("type") not in CONFINED:
        yield (
            f"{pod.path}.securityContext.seccompProfile.type is {_shown(profile.get('type'))}",
            SECCOMP,
        )
    for c in pod.containers:
        own = c.context.get("seccompProfile")
        if isinstance(own, dict):
            if own.get("type") not in CONFINED:
                yield (
                    f"{c.path}.securityContext.seccompProfile.type is {_shown(own.get('type'))}",
                    SECCOMP,
                )
        elif not isinstance(profile, dict):
            # Unset takes the pod's profile: refused above when a bad one, here when none.
            yield (
                f"{c.path}.securityContext.seccompProfile.type is unset and "
                f"{pod.path}.securityContext.seccompProfile.type is not RuntimeDefault "
                "or Localhost",
                SECCOMP,
            )


def _restricted_capabilities(pod: _Pod) -> Iterator[Finding]:
    for c in pod.containers:
        capabilities = _dict(c.context.get("capabilities"))
        if "ALL" not in [d for d in _list(capabilities.get("drop")) if isinstance(d, str)]:
            yield (f"{c.path}.securityContext.capabilities.drop does not have ALL", CAPABILITIES)
        added = [a for a in _list(capabilities.get("add")) if a != "NET_BIND_SERVICE"]
        if added:
            yield (
                f"{c.path}.securityContext.capabilities.add has {_names(added)} "
                "(only NET_BIND_SERVICE may be added)",
                CAPABILITIES,
            )


# --- RBAC ------------------------------------------------------------------------------


def _rbac(obj: dict[str, Any], *, allow_rbac: bool) -> Iterator[str]:
    api_version = obj.get("apiVersion")
    if not (isinstance(api_version, str) and api_version.split("/")[0] == RBAC_GROUP):
        return
    if not allow_rbac:
        yield f"the environment does not allow objects of the {RBAC_GROUP} API group"
    kind = obj.get("kind")
    if kind in BINDINGS:
        yield from _binding(obj, cluster_wide=kind == "ClusterRoleBinding")
    if kind in ROLES:
        yield from _rules(obj)
    if kind == "ClusterRole":
        labels = _dict(_dict(obj.get("metadata")).get("labels"))
        for key, value in labels.items():
            if isinstance(key, str) and key.startswith(AGGREGATE_LABEL) and value == "true":
                yield (
                    f"metadata.labels[{key}] adds its rules to the cluster's aggregated "
                    "roles, for every namespace, which no environment allows"
                )


def _binding(obj: dict[str, Any], *, cluster_wide: bool) -> Iterator[str]:
    ref = _dict(obj.get("roleRef"))
    name = ref.get("name")
    if ref.get("kind") == "ClusterRole" or cluster_wide:
        role = (
            "the ClusterRole cluster-admin, every right on the whole cluster"
            if name == "cluster-admin"
            else f"the ClusterRole {_shown(name)}"
        )
        scope = " in every namespace" if cluster_wide else ""
        yield (
            f"roleRef binds {role}{scope}: a binding to a ClusterRole grants rights the "
            "template's namespace does not own, which no environment allows"
        )
    for i, subject in enumerate(_list(obj.get("subjects"))):
        who = _dict(subject).get("name")
        if who in EVERYONE:
            yield (
                f"subjects[{i}] is {who}: the role would be everyone's who reaches the API "
                "server, which no environment allows"
            )


def _rules(obj: dict[str, Any]) -> Iterator[str]:
    for i, item in enumerate(_list(obj.get("rules"))):
        rule = _dict(item)
        verbs = [v for v in _list(rule.get("verbs")) if isinstance(v, str)]
        resources = [r for r in _list(rule.get("resources")) if isinstance(r, str)]
        if "*" in verbs:
            yield f"rules[{i}].verbs has *, every verb, which no environment allows"
        if any("*" in r for r in resources):
            yield f"rules[{i}].resources has *, every resource, which no environment allows"
        escalating = [v for v in verbs if v in ESCALATING_VERBS]
        if escalating:
            yield (
                f"rules[{i}].verbs has {', '.join(escalating)}, which get around RBAC "
                "(granting rights one lacks, or acting as someone else), "
                "which no environment allows"
            )


# --- shapes ----------------------------------------------------------------------------


def _where(obj: dict[str, Any]) -> str:
    kind = obj.get("kind")
    name = _dict(obj.get("metadata")).get("name")
    shown = f"'{name}'" if isinstance(name, str) and name else "(no name)"
    return f"{kind if isinstance(kind, str) and kind else 'Object'} {shown}"


def _at(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    node: Any = obj
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _contexts(pod: _Pod) -> list[tuple[str, dict[str, Any]]]:
    """The pod's securityContext and each container's, with their paths."""
    return [(f"{pod.path}.securityContext", pod.context)] + [
        (f"{c.path}.securityContext", c.context) for c in pod.containers
    ]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _set(flag: Any) -> bool:
    """A boolean field that is on: anything but unset and false counts, so that what the
    API server would refuse to read is not let through here either."""
    return flag is not None and flag is not False


def _label(item: dict[str, Any], index: int) -> str:
    """A list item as the API names it: by its name, else by its index."""
    name = item.get("name")
    return name if isinstance(name, str) and name else str(index)


def _names(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _shown(value: Any) -> str:
    return "unset" if value is None else str(value)
