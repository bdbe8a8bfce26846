"""Build the stack's Go programs once into the cache, keyed by component and version,
and install its MongoDB-protocol server (SecantusDB) there the same way.

Each Go component is a small wrapper Go module under ``devstack/gomod/<name>`` whose
``tool`` directives name the upstream main packages; its ``go.mod``/``go.sum`` pin
every dependency, so a new machine builds exactly the same programs.

SecantusDB is a Python program under the GPL (2.0 only): it gets a virtual
environment of its own in the cache, installed from ``secantusdb-requirements.txt``
(every package at an exact version), and runs only as a separate process of the
local stack. Fabu never imports it, and its own virtual environment never holds it.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devstack.paths import DEVSTACK, GOMOD, cache_dir


@dataclass(frozen=True)
class Component:
    name: str
    module: str  # the upstream module whose version keys the cache
    programs: dict[str, str]  # binary name -> Go package
    tags: tuple[str, ...] = ()  # Go build tags

    @property
    def version(self) -> str:
        return module_version(GOMOD / self.name / "go.mod", self.module)

    @property
    def bin_dir(self) -> Path:
        """Keyed by the upstream version and a digest of the wrapper module's files
        and the build tags."""
        return cache_dir() / "bin" / f"{self.name}-{self.version}-{self.source_digest}"

    @property
    def source_digest(self) -> str:
        digest = hashlib.sha256(",".join(self.tags).encode())
        for path in sorted((GOMOD / self.name).iterdir()):
            if path.is_file():
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:10]

    def binary(self, program: str) -> Path:
        return self.bin_dir / program

    def ldflags(self) -> str:
        if self.name != "kubernetes":
            return ""
        # Makes `--version` truthful and keeps kubectl's skew check quiet.
        major, minor = self.version.lstrip("v").split(".")[:2]
        pkg = "k8s.io/component-base/version"
        return " ".join(
            [
                f"-X {pkg}.gitVersion={self.version}",
                f"-X {pkg}.gitMajor={major}",
                f"-X {pkg}.gitMinor={minor}",
                f"-X {pkg}.gitTreeState=clean",
            ]
        )


KUBERNETES = Component(
    "kubernetes",
    "k8s.io/kubernetes",
    {
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    },
)
ETCD = Component("etcd", "go.etcd.io/etcd/server/v3", {"etcd": "go.etcd.io/etcd/server/v3"})
KWOK = Component("kwok", "sigs.k8s.io/kwok", {"kwok": "sigs.k8s.io/kwok/cmd/kwok"})
NATS = Component(
    "nats",
    "github.com/nats-io/nats-server/v2",
    {"nats-server": "github.com/nats-io/nats-server/v2"},
)
# The local stack's Prometheus reads its targets from files only: remove_all_sd leaves
# out every other service discovery (measured with an empty build cache on two cores:
# 3 min 20 s instead of about 8 min, a 75 MB binary instead of 147 MB). Without the
# builtinassets tag the web UI is not embedded; the tests use only the HTTP API.
PROMETHEUS = Component(
    "prometheus",
    "github.com/prometheus/prometheus",
    {"prometheus": "github.com/prometheus/prometheus/cmd/prometheus"},
    tags=("remove_all_sd",),
)
# For checking the Helm chart (lint, template), not part of the running stack.
HELM = Component("helm", "helm.sh/helm/v4", {"helm": "helm.sh/helm/v4/cmd/helm"})
COMPONENTS = (KUBERNETES, ETCD, KWOK, NATS, PROMETHEUS, HELM)
# Nothing to build: the stack applies the CRDs of its standard channel
# (config/crd/standard) from Go's module cache, checked against the wrapper's go.sum.
GATEWAY_API = Component("gateway-api", "sigs.k8s.io/gateway-api", {})

REGISTRY_BINARY = "docker-registry"


def module_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", go_mod.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"{go_mod} does not require {module}")
    return match.group(1)


def build(component: Component) -> bool:
    """Build the component unless its versioned folder is complete. True when it built."""
    if all(component.binary(p).exists() for p in component.programs):
        return False
    staging = component.bin_dir.with_name(component.bin_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env = {**os.environ, "GOFLAGS": "-buildvcs=false -mod=readonly"}
    started = time.monotonic()
    for program, package in component.programs.items():
        print(f"building {program} {component.version} (cached after the first time)", flush=True)
        cmd = ["go", "build", "-trimpath", "-o", str(staging / program)]
        if flags := component.ldflags():
            cmd += ["-ldflags", flags]
        if component.tags:
            cmd += ["-tags", ",".join(component.tags)]
        subprocess.run([*cmd, package], cwd=GOMOD / component.name, env=env, check=True)  # noqa: S603 - go with arguments built here
    shutil.rmtree(component.bin_dir, ignore_errors=True)
    staging.rename(component.bin_dir)
    print(f"built {component.name} {component.version} in {time.monotonic() - started:.0f}s")
    return True


@dataclass(frozen=True)
class PythonServer:
    """A server written in Python, in a virtual environment of its own under the cache."""

    name: str
    distribution: str  # the pinned requirement whose version keys the cache
    script: str  # its console script, run by the environment's own python
    requirements: Path

    @property
    def version(self) -> str:
        pin = re.search(
            rf"^{re.escape(self.distribution)}==(\S+)", self.requirements.read_text(), re.M | re.I
        )
        if pin is None:
            raise RuntimeError(f"{self.requirements} does not pin {self.distribution}")
        return pin.group(1)

    @property
    def venv_dir(self) -> Path:
        """Keyed by the version and a digest of the pins and of the Python it runs on."""
        digest = hashlib.sha256(self.requirements.read_bytes())
        digest.update(f"\0{sys.version_info.major}.{sys.version_info.minor}".encode())
        return cache_dir() / "venv" / f"{self.name}-{self.version}-{digest.hexdigest()[:10]}"

    @property
    def python(self) -> Path:
        return self.venv_dir / "bin" / "python"

    def argv(self) -> list[str]:
        """The start of its command line (``-I``: nothing from the caller's environment
        or working directory on its module path)."""
        return [str(self.python), "-I", str(self.venv_dir / "bin" / self.script)]


SECANTUSDB = PythonServer(
    "secantusdb", "SecantusDB", "secantusd-py", DEVSTACK / "secantusdb-requirements.txt"
)
INSTALLED = ".installed"  # written last: a folder without it is a broken install


def install(server: PythonServer) -> bool:
    """Install the server unless its versioned environment is complete. True when it did.

    The environment is made in a folder of this process's own and renamed into place,
    so two checkouts installing at once cannot mix their files.
    """
    if (server.venv_dir / INSTALLED).exists():
        return False
    started = time.monotonic()
    print(f"installing {server.name} {server.version} (cached after the first time)", flush=True)
    staging = server.venv_dir.with_name(f"{server.venv_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True)  # noqa: S603 - this Python's venv module
    pip = [str(staging / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    # Every package is pinned in the file: --no-deps installs exactly those, and the
    # check fails if the file misses one.
    subprocess.run(  # noqa: S603 - pip with the pinned file of this repository
        [*pip, "install", "--quiet", "--pre", "--no-deps", "-r", str(server.requirements)],
        check=True,
    )
    subprocess.run([*pip, "check"], check=True)  # noqa: S603 - pip check, nothing from input
    (staging / INSTALLED).write_text(server.version + "\n")
    if server.venv_dir.exists() and not (server.venv_dir / INSTALLED).exists():
        shutil.rmtree(server.venv_dir, ignore_errors=True)  # a broken earlier install
    try:
        staging.rename(server.venv_dir)
    except OSError:
        # Another checkout installed the same meanwhile: keep the one in place.
        shutil.rmtree(staging, ignore_errors=True)
        if not (server.venv_dir / INSTALLED).exists():
            raise
        return False
    print(f"installed {server.name} {server.version} in {time.monotonic() - started:.0f}s")
    return True


CHROMIUM = "/usr/bin/chromium"
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"


def ensure_debian_packages(names: list[str] | None = None) -> None:
    """Debian's docker-registry (the OCI registry) and Chromium (the UI's browser tests)."""
    missing = []
    if (names is None or "chromium" in names) and not Path(CHROMIUM).exists():
        missing.append("chromium")
    if (names is None or "chromium" in names) and not Path(CJK_FONT).exists():
        missing.append("fonts-wqy-microhei")  # the Chinese pages' screenshots
    if (names is None or "registry" in names) and not shutil.which(REGISTRY_BINARY):
        missing.append(REGISTRY_BINARY)
    if not missing:
        return
    print(f"installing Debian's {' '.join(missing)}", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    apt = [*sudo, "apt-get", "install", "-y", "--no-install-recommends", *missing]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(apt, env=env, check=False).returncode != 0:  # noqa: S603 - apt-get with the package list built here
        subprocess.run([*sudo, "apt-get", "update"], env=env, check=True)  # noqa: S603 - apt-get update, nothing from input
        subprocess.run(apt, env=env, check=True)  # noqa: S603 - apt-get with the package list built here


def build_all(names: list[str] | None = None) -> None:
    """Build in parallel: each link step is single-threaded, so two cores stay busy.
    SecantusDB installs meanwhile."""
    wanted = [c for c in COMPONENTS if names is None or c.name in names]
    with ThreadPoolExecutor(max_workers=len(wanted) + 1) as pool:
        futures = [pool.submit(build, c) for c in wanted]
        if names is None or SECANTUSDB.name in names:
            futures.append(pool.submit(install, SECANTUSDB))
        for future in futures:
            future.result()
    ensure_debian_packages(names)


if __name__ == "__main__":
    build_all(sys.argv[1:] or None)
