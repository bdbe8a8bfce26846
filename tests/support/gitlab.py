"""A GitLab stand-in owned by the tests: NOT GitLab.

Nothing real can run GitLab here, so this small server answers the one v4
API call Fabu makes through python-gitlab (``GET /api/v4/projects/:id/
repository/files/:file_path?ref=``) in the shape GitLab documents, including
its 401 and 404 answers, and builds webhook payloads in the documented shape
of the Push Hook and the Merge Request Hook. Projects, branches and commits
live in memory.
"""

import base64
import hashlib
import json
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.support.http import serve

TOKEN = "glpat-test-token"
WEBHOOK_SECRET = "webhook-secret-for-tests"


@dataclass
class Project:
    id: int
    path: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, str]] = field(default_factory=dict)


class FakeGitLab:
    def __init__(self) -> None:
        self.projects: dict[str, Project] = {}
        self.requests: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v4/projects/{rest:.*}", self._files)
        self._runner, self.url = await serve(app)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def project(self, path: str) -> Project:
        if path not in self.projects:
            project = Project(id=1000 + len(self.projects) // 2, path=path)
            self.projects[path] = self.projects[str(project.id)] = project
        return self.projects[path]

    def push(
        self, path: str, files: dict[str, str], branch: str = "main", removed: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """Commit ``files`` on ``branch`` and return the Push Hook payload GitLab would send."""
        project = self.project(path)
        before = project.branches.get(branch, "0" * 40)
        tree = {**project.commits.get(before, {}), **files}
        for name in removed:
            tree.pop(name, None)
        sha = hashlib.sha1(json.dumps([before, tree], sort_keys=True).encode()).hexdigest()
        project.commits[sha] = tree
        project.branches[branch] = sha
        old = project.commits.get(before, {})
        commit = {
            "id": sha,
            "message": "Update templates\n",
            "title": "Update templates",
            "timestamp": datetime.now(UTC).isoformat(),
            "url": f"https://gitlab.example.com/{path}/-/commit/{sha}",
            "author": {"name": "Jane Doe", "email": "jane@example.com"},
            "added": sorted(f for f in files if f not in old),
            "modified": sorted(f for f in files if f in old),
            "removed": sorted(removed),
        }
        return {
            "object_kind": "push",
            "event_name": "push",
            "before": before,
            "after": sha,
            "ref": f"refs/heads/{branch}",
            "ref_protected": True,
            "checkout_sha": sha,
            "user_id": 4,
            "user_name": "Jane Doe",
            "user_username": "jdoe",
            "user_email": "jane@example.com",
            "project_id": project.id,
            "project": self._project_json(project),
            "commits": [commit],
            "total_commits_count": 1,
            "repository": {
                "name": path.rsplit("/", 1)[-1],
                "url": f"git@gitlab.example.com:{path}.git",
                "homepage": f"https://gitlab.example.com/{path}",
            },
        }

    def merged(self, path: str, files: dict[str, str], target: str = "main") -> dict[str, Any]:
        """Merge a branch with ``files`` into ``target``: the Merge Request Hook payload."""
        project = self.project(path)
        sha = self.push(path, files, branch=target)["after"]
        return {
            "object_kind": "merge_request",
            "event_type": "merge_request",
            "user": {"id": 1, "name": "Jane Doe", "username": "jdoe"},
            "project": self._project_json(project),
            "object_attributes": {
                "id": 99,
                "iid": 1,
                "target_branch": target,
                "source_branch": "feature",
                "state": "merged",
                "action": "merge",
                "merge_commit_sha": sha,
                "last_commit": {"id": sha, "message": "Update templates"},
            },
        }

    @staticmethod
    def _project_json(project: Project) -> dict[str, Any]:
        return {
            "id": project.id,
            "name": project.path.rsplit("/", 1)[-1],
            "web_url": f"https://gitlab.example.com/{project.path}",
            "path_with_namespace": project.path,
            "default_branch": "main",
            "git_http_url": f"https://gitlab.example.com/{project.path}.git",
        }

    async def _files(self, request: web.Request) -> web.Response:
        raw = request.rel_url.raw_path.removeprefix("/api/v4/projects/")
        self.requests.append(raw)
        if request.headers.get("PRIVATE-TOKEN") != TOKEN:
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        project_key, _, rest = raw.partition("/")
        if not rest.startswith("repository/files/"):
            return web.json_response({"error": "404 Not Found"}, status=404)
        project = self.projects.get(urllib.parse.unquote(project_key))
        if project is None:
            return web.json_response({"message": "404 Project Not Found"}, status=404)
        file_path = urllib.parse.unquote(rest.removeprefix("repository/files/"))
        ref = request.query.get("ref", "")
        sha = project.branches.get(ref, ref)
        content = project.commits.get(sha, {}).get(file_path)
        if content is None:
            return web.json_response({"message": "404 File Not Found"}, status=404)
        data = content.encode()
        return web.json_response(
            {
                "file_name": file_path.rsplit("/", 1)[-1],
                "file_path": file_path,
                "size": len(data),
                "encoding": "base64",
                "content": base64.b64encode(data).decode(),
                "content_sha256": hashlib.sha256(data).hexdigest(),
                "ref": ref,
                "blob_id": hashlib.sha1(data).hexdigest(),
                "commit_id": sha,
                "last_commit_id": sha,
                "execute_filemode": False,
            }
        )
