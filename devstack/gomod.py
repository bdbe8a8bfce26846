"""Regenerate a wrapper Go module when bumping a pinned version.

``k8s.io/kubernetes`` replaces every staging module (``k8s.io/api``,
``k8s.io/client-go``, ...) with ``./staging/...`` paths, so it cannot be built
as a dependency until our wrapper replaces each of them with the published
``v0.<minor>.<patch>`` module. The list is read from the upstream go.mod of the
requested version, never written by hand.

    python -m devstack.gomod kubernetes v1.35.4
    python -m devstack.gomod etcd v3.6.16
    python -m devstack.gomod prometheus v0.316.0
    python -m devstack.gomod gateway-api v1.6.3  (a module read for its files, not built)
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from devstack.build import COMPONENTS, GATEWAY_API, Component
from devstack.paths import GOMOD

GO_DIRECTIVE = "1.26"


def staging_modules(kubernetes_go_mod: str) -> list[str]:
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", kubernetes_go_mod, re.M)))


def staging_replaces(kubernetes_version: str, kubernetes_go_mod: str) -> str:
    staging_version = "v0." + kubernetes_version.removeprefix("v1.")
    lines = [f"\t{m} => {m} {staging_version}" for m in staging_modules(kubernetes_go_mod)]
    return "replace (\n" + "\n".join(lines) + "\n)\n"


def _go(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "GOFLAGS": "-buildvcs=false"}
    done = subprocess.run(["go", *args], cwd=cwd, env=env, check=True, capture_output=True)  # noqa: S603,S607 - the developer's go from PATH, arguments built here
    return done.stdout.decode()


def regenerate(component: Component, version: str) -> None:
    folder = GOMOD / component.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "go.sum").unlink(missing_ok=True)
    header = f"module fabu.local/devstack/{component.name}\n\ngo {GO_DIRECTIVE}\n"
    if component.name == "kubernetes":
        info = json.loads(
            _go(["mod", "download", "-json", f"{component.module}@{version}"], folder)
        )
        header += "\n" + staging_replaces(version, Path(info["GoMod"]).read_text())
    (folder / "go.mod").write_text(header)
    if not component.programs:
        _go(["get", f"{component.module}@{version}"], folder)
        return
    # An explicit version on every tool: a bare path would mean @latest.
    _go(["get", "-tool", *(f"{pkg}@{version}" for pkg in component.programs.values())], folder)


def main(argv: list[str]) -> None:
    by_name = {c.name: c for c in (*COMPONENTS, GATEWAY_API)}
    if len(argv) != 2 or argv[0] not in by_name:
        sys.exit(f"usage: python -m devstack.gomod {{{','.join(by_name)}}} VERSION")
    regenerate(by_name[argv[0]], argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
