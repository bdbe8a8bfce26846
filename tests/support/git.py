"""Git repositories on this machine, for the tests' Git template sources."""

import subprocess
from pathlib import Path


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def repository(tmp_path: Path, content: str) -> tuple[Path, Path]:
    """A bare repository whose ``main`` holds ``web.yaml.j2`` with ``content``, and the
    working copy it was pushed from (commit there and push for the next version)."""
    remote, work = tmp_path / "templates.git", tmp_path / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote), cwd=tmp_path)
    git("clone", "--quiet", str(remote), str(work), cwd=tmp_path)
    for key, value in (("user.email", "ci@example.com"), ("user.name", "CI")):
        git("config", key, value, cwd=work)
    (work / "web.yaml.j2").write_text(content)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "first", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return remote, work
