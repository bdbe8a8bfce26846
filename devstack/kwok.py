"""KWOK's configuration: nodes, pod life cycles, failure modes and container logs.

Any ``Stage`` given to kwok replaces all of its default stages, so the node and
pod stages below restate KWOK's defaults (``kustomize/stage/{node,pod}/fast``)
with three changes: healthy pods become Ready only after a delay, and three
failure modes are played instead of readiness. A pod selects a mode with the
label ``kwok.fabu.dev/fault=<mode>`` or with an image tag ending in ``-<mode>``:

``never-ready``  Running, containers started, never Ready.
``crash-loop``   Running, then the container dies again and again: waiting
                 ``CrashLoopBackOff``, a terminated ``lastState`` (exit 1) and a
                 ``restartCount`` that grows.
``pull-fail``    Pending with ``ErrImagePull`` then ``ImagePullBackOff``.

Container logs are the CRI-format files written by :func:`write_logs`; the
kwok controller serves them as the kubelet does, so ``kubectl logs`` and the
API's ``pods/log`` (with ``previous``) return them.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

FAULT_LABEL = "kwok.fabu.dev/fault"
NEVER_READY = "never-ready"
CRASH_LOOP = "crash-loop"
PULL_FAIL = "pull-fail"
# A Job's pod that exits 1 (a Job's other pods exit 0 once they ran).
JOB_FAIL = "job-fail"
FAULTS = (NEVER_READY, CRASH_LOOP, PULL_FAIL, JOB_FAIL)
NODE_ANNOTATION = "kwok.x-k8s.io/node"
NODE_COUNT = 8

CURRENT_LOG_LINES = ("fabu-kwok: container started", "listening on :8080")
PREVIOUS_LOG_LINES = (
    "fabu-kwok: container started",
    "panic: simulated failure for tests",
    "exit status 1",
)

_NOW = "{{ $now := Now }}"
_ADDRESSES = """
{{ $hostIPs := NodeIPsWith .spec.nodeName }}
{{ with $hostIPs }}
hostIP: {{ index . 0 | Quote }}
hostIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
{{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
{{ with $podIPs }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
"""


def _conditions(ready: bool, reason: str = "") -> str:
    status = '"True"' if ready else '"False"'
    why = "" if ready else f"\n  reason: {reason}"
    return f"""
conditions:
- lastTransitionTime: {{{{ $now | Quote }}}}
  status: "True"
  type: Initialized
- lastTransitionTime: {{{{ $now | Quote }}}}
  status: {status}
  type: Ready{why}
- lastTransitionTime: {{{{ $now | Quote }}}}
  status: {status}
  type: ContainersReady{why}
{{{{ range .spec.readinessGates }}}}
- lastTransitionTime: {{{{ $now | Quote }}}}
  status: {status}
  type: {{{{ .conditionType | Quote }}}}
{{{{ end }}}}
"""


def fault_expression(modes: Sequence[str]) -> str:
    """A jq expression that is true when the pod asked for one of ``modes``."""
    alternatives = "|".join(modes)
    return (
        f'((.metadata.labels["{FAULT_LABEL}"] // "") | test("^({alternatives})$"))'
        f' or ([.spec.containers[].image | test("-({alternatives})$")] | any)'
    )


def _pod_stage(
    name: str,
    expressions: list[dict[str, Any]],
    status_template: str,
    delay_ms: int = 0,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
        "selector": {
            "matchExpressions": [
                {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                *expressions,
            ]
        },
        "next": {"statusTemplate": status_template},
    }
    if delay_ms:
        spec["delay"] = {"durationMilliseconds": delay_ms}
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": spec,
    }


def _phase(phase: str) -> dict[str, Any]:
    return {"key": ".status.phase", "operator": "In", "values": [phase]}


def _fault(modes: Sequence[str], present: bool = True) -> dict[str, Any]:
    return {
        "key": fault_expression(modes),
        "operator": "In" if present else "NotIn",
        "values": ["true"],
    }


def _state_is(path: str, value: str) -> dict[str, Any]:
    return {
        "key": f".status.containerStatuses.[0].state.{path}",
        "operator": "In",
        "values": [value],
    }


def _containers(state: str, ready: bool, restart: str = "0", last_state: str = "") -> str:
    return f"""
containerStatuses:
{{{{ range $index, $item := .spec.containers }}}}
{{{{ $origin := dict }}}}
{{{{ if $root.status.containerStatuses }}}}{{{{ if lt $index (len $root.status.containerStatuses) }}}}
{{{{ $origin = index $root.status.containerStatuses $index }}}}
{{{{ end }}}}{{{{ end }}}}
- image: {{{{ $item.image | Quote }}}}
  name: {{{{ $item.name | Quote }}}}
  ready: {str(ready).lower()}
  started: {str("running" in state).lower()}
  restartCount: {restart}
  state:{state}{last_state}
{{{{ end }}}}
"""


_RUNNING = """
    waiting: null
    running:
      startedAt: {{ $now | Quote }}"""
_CRASHED = """
    running: null
    waiting:
      reason: CrashLoopBackOff
      message: {{ printf "back-off restarting failed container %s" $item.name | Quote }}"""
_LAST_TERMINATED = """
  lastState:
    terminated:
      exitCode: 1
      reason: Error
      startedAt: {{ or (and $origin.state $origin.state.running $origin.state.running.startedAt) $now | Quote }}
      finishedAt: {{ $now | Quote }}"""
_KEEP_LAST_STATE = """
  {{ with $origin.lastState }}lastState: {{ toJson . }}{{ end }}"""


def _exited(code: int, reason: str) -> str:
    return f"""
    running: null
    terminated:
      exitCode: {code}
      reason: {reason}
      startedAt: {{{{ $now | Quote }}}}
      finishedAt: {{{{ $now | Quote }}}}"""


def _pull_waiting(reason: str) -> str:
    return f"""
    waiting:
      reason: {reason}
      message: {{{{ printf "failed to pull and unpack image %q: not found" $item.image | Quote }}}}"""


def _template(*parts: str) -> str:
    return "\n".join([_NOW, "{{ $root := . }}", *parts])


def pod_stages(ready_delay_ms: int) -> list[dict[str, Any]]:
    """Pod life cycles; every selector excludes the state its stage writes, so none loops."""
    not_ready = {
        "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
        "operator": "NotIn",
        "values": ["True"],
    }
    first_state = {"key": ".status.containerStatuses", "operator": "DoesNotExist"}
    running_pod = "phase: Running\nstartTime: {{ or $root.status.startTime $now | Quote }}"
    # A Job's pod runs once, then its containers exit.
    of_a_job = {"key": ".metadata.ownerReferences.[0].kind", "operator": "In", "values": ["Job"]}
    backoff_ms = 2 * ready_delay_ms
    return [
        _pod_stage(
            "pod-ready",
            [_phase("Pending"), not_ready, _fault(FAULTS, present=False)],
            _template(_conditions(True), _containers(_RUNNING, True), _ADDRESSES, running_pod),
            ready_delay_ms,
        ),
        _pod_stage(
            "pod-never-ready",
            [_phase("Pending"), _fault([NEVER_READY])],
            _template(
                _conditions(False, "ContainersNotReady"),
                _containers(_RUNNING, False),
                _ADDRESSES,
                running_pod,
            ),
            ready_delay_ms,
        ),
        _pod_stage(
            "pod-crash-loop-start",
            [_phase("Pending"), _fault([CRASH_LOOP])],
            _template(
                _conditions(False, "ContainersNotReady"),
                _containers(_RUNNING, False),
                _ADDRESSES,
                running_pod,
            ),
            ready_delay_ms,
        ),
        _pod_stage(
            "pod-crash-loop-crash",
            [
                _phase("Running"),
                _fault([CRASH_LOOP]),
                {"key": ".status.containerStatuses.[0].state.running", "operator": "Exists"},
            ],
            _template(
                _conditions(False, "ContainersNotReady"),
                _containers(
                    _CRASHED, False, "{{ add (or $origin.restartCount 0) 1 }}", _LAST_TERMINATED
                ),
                "phase: Running",
            ),
            ready_delay_ms,
        ),
        _pod_stage(
            "pod-crash-loop-restart",
            [
                _phase("Running"),
                _fault([CRASH_LOOP]),
                _state_is("waiting.reason", "CrashLoopBackOff"),
            ],
            _template(
                _conditions(False, "ContainersNotReady"),
                _containers(_RUNNING, False, "{{ or $origin.restartCount 0 }}", _KEEP_LAST_STATE),
                "phase: Running",
            ),
            backoff_ms,
        ),
        _pod_stage(
            "pod-pull-fail",
            [_phase("Pending"), _fault([PULL_FAIL]), first_state],
            _template(
                _conditions(False, "ContainersNotReady"),
                _containers(_pull_waiting("ErrImagePull"), False),
                _ADDRESSES,
                "phase: Pending",
            ),
            ready_delay_ms,
        ),
        _pod_stage(
            "pod-pull-backoff",
            [_phase("Pending"), _fault([PULL_FAIL]), _state_is("waiting.reason", "ErrImagePull")],
            _template(
                _conditions(False, "ContainersNotReady"),
                _containers(_pull_waiting("ImagePullBackOff"), False),
                "phase: Pending",
            ),
            ready_delay_ms,
        ),
        _pod_stage(
            "pod-job-complete",
            [_phase("Running"), of_a_job, _fault(FAULTS, present=False)],
            _template(
                _conditions(False, "PodCompleted"),
                _containers(_exited(0, "Completed"), False),
                "phase: Succeeded",
            ),
            ready_delay_ms,
        ),
        _pod_stage(
            "pod-job-fail",
            [_phase("Pending"), of_a_job, _fault([JOB_FAIL])],
            _template(
                _conditions(False, "PodFailed"),
                _containers(_exited(1, "Error"), False),
                _ADDRESSES,
                "phase: Failed",
            ),
            ready_delay_ms,
        ),
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Stage",
            "metadata": {"name": "pod-delete"},
            "spec": {
                "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
                "selector": {
                    "matchExpressions": [
                        {"key": ".metadata.deletionTimestamp", "operator": "Exists"}
                    ]
                },
                "next": {"delete": True},
            },
        },
    ]


def node_stages(upstream: Path) -> list[dict[str, Any]]:
    """KWOK's own node stages, read from the module source of the pinned version."""
    stage_dir = upstream / "kustomize" / "stage" / "node"
    files = [
        stage_dir / "fast" / "node-initialize.yaml",
        stage_dir / "heartbeat-with-lease" / "node-heartbeat-with-lease.yaml",
    ]
    return [yaml.safe_load(f.read_text()) for f in files]


def cluster_logs(log_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ClusterLogs",
        "metadata": {"name": "fabu-logs"},
        "spec": {
            "logs": [
                {
                    "logsFile": str(log_dir / "current.log"),
                    "previousLogsFile": str(log_dir / "previous.log"),
                    "follow": False,
                }
            ]
        },
    }


def _cri_lines(lines: Sequence[str]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "".join(f"{stamp} stdout F {line}\n" for line in lines)


def write_logs(log_dir: Path) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "current.log").write_text(_cri_lines(CURRENT_LOG_LINES))
    (log_dir / "previous.log").write_text(_cri_lines(PREVIOUS_LOG_LINES))


def write_config(path: Path, upstream: Path, ready_delay_ms: int) -> None:
    log_dir = path.parent / "container-logs"
    write_logs(log_dir)
    docs = [*node_stages(upstream), *pod_stages(ready_delay_ms), cluster_logs(log_dir)]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def nodes_manifest() -> str:
    nodes = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"kwok-node-{i}",
                "annotations": {NODE_ANNOTATION: "fake"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": f"kwok-node-{i}",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "500"},
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "500"},
            },
        }
        for i in range(NODE_COUNT)
    ]
    return yaml.safe_dump_all(nodes, sort_keys=False)
