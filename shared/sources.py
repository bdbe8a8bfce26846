"""Reading a template file from where it lives: GitLab's API, or any Git repository.

GitLab goes through python-gitlab (``GET /projects/:id/repository/files/:path``),
which is synchronous, so it runs in a worker thread. A plain Git repository is
fetched with ``git`` at the one ref needed, depth 1, into a scratch directory.
"""

import asyncio
import base64
import os
import tempfile
from dataclasses import dataclass

import gitlab
import gitlab.exceptions

from shared.errors import FabuError, TransientError
from shared.models import TemplateSource

GIT_TIMEOUT_S = 60


class SourceError(FabuError):
    """The file could not be read (not there, not allowed); retrying will not help."""

    status = 422


@dataclass(frozen=True)
class SourceFile:
    content: str
    commit_sha: str


@dataclass(frozen=True)
class GitLab:
    url: str
    token: str


async def fetch(source: TemplateSource, gitlab_api: GitLab, ref: str | None = None) -> SourceFile:
    """The file at ``ref`` (a commit sha or branch; default: the source's ref)."""
    at = ref or source.ref
    if source.type == "gitlab":
        return await asyncio.to_thread(_from_gitlab, gitlab_api, source, at)
    return await _from_git(source, at)


def _from_gitlab(api: GitLab, source: TemplateSource, ref: str) -> SourceFile:
    if not api.url:
        raise SourceError("GitLab is not configured (FABU_GITLAB_URL)")
    client = gitlab.Gitlab(api.url, private_token=api.token or None, timeout=30)
    where = f"{source.path} at {ref} in GitLab project {source.project}"
    try:
        project = client.projects.get(source.project, lazy=True)
        found = project.files.get(file_path=source.path, ref=ref)
    except gitlab.exceptions.GitlabAuthenticationError as exc:
        raise SourceError(f"GitLab refused the token reading {where}") from exc
    except gitlab.exceptions.GitlabGetError as exc:
        if exc.response_code and exc.response_code >= 500:
            raise TransientError(f"GitLab failed reading {where}: {exc.error_message}") from exc
        raise SourceError(f"{where}: {exc.error_message}") from exc
    except gitlab.exceptions.GitlabError as exc:
        raise TransientError(f"GitLab failed reading {where}: {exc.error_message}") from exc
    except OSError as exc:  # requests' connection errors derive from it
        raise TransientError(f"GitLab unreachable reading {where}: {exc}") from exc
    content = base64.b64decode(found.content).decode("utf-8", errors="replace")
    return SourceFile(content=content, commit_sha=str(found.commit_id))


async def _git(*args: str, cwd: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), GIT_TIMEOUT_S)
    except TimeoutError as exc:
        process.kill()
        raise TransientError(f"git {args[0]} took more than {GIT_TIMEOUT_S}s") from exc
    if process.returncode != 0:
        raise SourceError(f"git {args[0]}: {err.decode(errors='replace').strip()[:500]}")
    return out.decode(errors="replace")


async def _from_git(source: TemplateSource, ref: str) -> SourceFile:
    with tempfile.TemporaryDirectory(prefix="fabu-git-") as scratch:
        await _git("init", "--quiet", cwd=scratch)
        await _git("fetch", "--quiet", "--depth", "1", source.url, ref, cwd=scratch)
        sha = (await _git("rev-parse", "FETCH_HEAD", cwd=scratch)).strip()
        content = await _git("show", f"FETCH_HEAD:{source.path}", cwd=scratch)
    return SourceFile(content=content, commit_sha=sha)
