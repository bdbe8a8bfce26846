"""Reading a template file from where it lives: GitLab's API, or any Git repository.

GitLab goes through python-gitlab (``GET /projects/:id/repository/files/:path``),
which is synchronous, so it runs in a worker thread. A plain Git repository is
fetched with ``git`` at the one ref needed, depth 1, into a scratch directory.

Every value from a request reaches git after ``--`` (or behind ``FETCH_HEAD:``),
already checked by ``TemplateSource``; git runs with only the transports
``FABU_GIT_PROTOCOLS`` allows, no terminal prompt, no hooks, no configuration
but its own, no redirects, and a deadline, and it is killed with its helpers
when that passes.
"""

import asyncio
import base64
import functools
import os
import signal
import tempfile
import urllib.parse
from dataclasses import dataclass

import gitlab
import gitlab.exceptions
import requests

from shared.errors import FabuError, TransientError
from shared.models.catalog import SCP_LIKE, TemplateSource, ref_problem
from shared.outside.egress import NOTHING, Deny, check_url
from shared.settings import Settings

GIT_TIMEOUT_S = 60
# A template file: 200,000 characters of up to 4 bytes.
MAX_BYTES = 800_000


class SourceError(FabuError):
    """The file could not be read (not there, not allowed); retrying will not help."""

    status = 422


# A template's parameter schema lives beside it: ``deploy.yaml`` → ``deploy.yaml.schema.json``.
SCHEMA_SUFFIX = ".schema.json"


@dataclass(frozen=True)
class SourceFile:
    content: str
    commit_sha: str
    # The schema file beside it at the same commit, as text (None: there is none).
    schema: str | None = None


@dataclass(frozen=True)
class Remotes:
    """Where sources are read from, and what may be reached: from the settings."""

    gitlab_url: str = ""
    gitlab_token: str = ""
    deny: Deny = NOTHING
    git_protocols: tuple[str, ...] = ("https", "ssh")

    @classmethod
    def of(cls, settings: Settings) -> "Remotes":
        return cls(
            gitlab_url=settings.gitlab_url,
            gitlab_token=settings.gitlab_token,
            deny=settings.deny,
            git_protocols=tuple(settings.git_protocols.split(",")),
        )


async def fetch(source: TemplateSource, remotes: Remotes, ref: str | None = None) -> SourceFile:
    """The file at ``ref`` (a commit sha or branch; default: the source's ref)."""
    at = ref or source.ref
    problem = ref_problem(at)
    if problem:
        raise SourceError(f"ref {at[:100]!r} is not a branch, tag or commit name: {problem}")
    if source.type == "gitlab":
        if not remotes.gitlab_url:
            raise SourceError("GitLab is not configured (FABU_GITLAB_URL)")
        await check_url(remotes.gitlab_url, remotes.deny)
        return await asyncio.to_thread(_from_gitlab, remotes, source, at)
    return await _from_git(source, at, remotes)


def _from_gitlab(remotes: Remotes, source: TemplateSource, ref: str) -> SourceFile:
    session = requests.Session()
    session.max_redirects = 0  # GitLab's own address, not wherever it points
    client = gitlab.Gitlab(
        remotes.gitlab_url,
        private_token=remotes.gitlab_token or None,
        timeout=30,
        session=session,
    )
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
    sha = str(found.commit_id)
    try:
        beside = project.files.get(file_path=source.path + SCHEMA_SUFFIX, ref=sha)
    except gitlab.exceptions.GitlabGetError as exc:
        if exc.response_code != 404:
            raise TransientError(f"GitLab failed reading the schema of {where}") from exc
        return SourceFile(content=content, commit_sha=sha)
    except (gitlab.exceptions.GitlabError, OSError) as exc:
        raise TransientError(f"GitLab failed reading the schema of {where}: {exc}") from exc
    schema = base64.b64decode(beside.content).decode("utf-8", errors="replace")
    return SourceFile(content=content, commit_sha=sha, schema=schema)


def _protocol(url: str) -> str:
    return "ssh" if SCP_LIKE.match(url) else url.partition("://")[0]


def _environment(scratch: str, protocols: tuple[str, ...]) -> dict[str, str]:
    """git's environment: the machine's configuration, prompts and helpers left out."""
    keep = {"PATH", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR", "SSH_AUTH_SOCK"}
    keep |= {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"}
    return {
        **{k: v for k, v in os.environ.items() if k in keep},
        "HOME": scratch,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "SSH_ASKPASS": "true",
        # Only these transports, whatever a URL or a submodule names (ext:: and fd:: never).
        "GIT_ALLOW_PROTOCOL": ":".join(protocols),
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    }


# Settings given on every command line: no hooks, no redirects to other hosts, no
# credential helpers, no file system monitor.
GIT_OPTIONS = (
    "-c", "core.hooksPath=" + os.devnull,
    "-c", "core.fsmonitor=false",
    "-c", "credential.helper=",
    "-c", "http.followRedirects=false",
    "-c", "protocol.allow=never",
)  # fmt: skip


async def _git(*args: str, cwd: str, protocols: tuple[str, ...]) -> str:
    allow = [f"protocol.{p}.allow=always" for p in protocols]
    process = await asyncio.create_subprocess_exec(
        "git",
        *GIT_OPTIONS,
        *[x for a in allow for x in ("-c", a)],
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_environment(cwd, protocols),
        start_new_session=True,  # its helpers (ssh, git-remote-https) die with it
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), GIT_TIMEOUT_S)
    except TimeoutError as exc:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise TransientError(f"git {args[0]} took more than {GIT_TIMEOUT_S}s") from exc
    if process.returncode != 0:
        raise SourceError(f"git {args[0]}: {_without_secrets(err.decode(errors='replace'))}")
    return out.decode(errors="replace")


def _without_secrets(text: str) -> str:
    """git's message, with any user:password@ in a URL it quotes left out."""
    words = []
    for word in text.strip()[:500].split():
        parts = urllib.parse.urlsplit(word.strip("'\""))
        secret = f"{parts.username}:{parts.password}@" if parts.scheme and parts.password else ""
        words.append(word.replace(secret, "") if secret else word)
    return " ".join(words)


async def _from_git(source: TemplateSource, ref: str, remotes: Remotes) -> SourceFile:
    protocol = _protocol(source.url)
    if protocol not in remotes.git_protocols:
        allowed = ", ".join(remotes.git_protocols)
        raise SourceError(
            f"url: {protocol} is not a transport Fabu may use (FABU_GIT_PROTOCOLS: {allowed})"
        )
    if protocol in ("http", "https"):
        await check_url(source.url, remotes.deny)
    with tempfile.TemporaryDirectory(prefix="fabu-git-") as scratch:
        git = functools.partial(_git, cwd=scratch, protocols=remotes.git_protocols)
        await git("init", "--quiet")
        await git("fetch", "--quiet", "--no-tags", "--depth", "1", "--", source.url, ref)
        sha = (await git("rev-parse", "--verify", "FETCH_HEAD")).strip()
        blob = f"FETCH_HEAD:{source.path}"
        if int(await git("cat-file", "-s", blob)) > MAX_BYTES:
            raise SourceError(f"{source.path} is larger than {MAX_BYTES:,} bytes")
        content = await git("cat-file", "blob", blob)
        schema_path = source.path + SCHEMA_SUFFIX
        schema = None
        if (await git("ls-tree", "--name-only", "FETCH_HEAD", "--", schema_path)).strip():
            if int(await git("cat-file", "-s", f"FETCH_HEAD:{schema_path}")) > MAX_BYTES:
                raise SourceError(f"{schema_path} is larger than {MAX_BYTES:,} bytes")
            schema = await git("cat-file", "blob", f"FETCH_HEAD:{schema_path}")
    return SourceFile(content=content, commit_sha=sha, schema=schema)
