"""Git template sources: what a request may name, and what git may do with it.

Each attack is tried twice: through the model (which refuses it, naming the field)
and straight at ``fetch`` with the model's checks bypassed (git itself must still
run nothing): a canary file that no input may create.
"""

import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.models.catalog import TemplateSource, ref_problem
from shared.templating.sources import Remotes, SourceError, _from_git, fetch
from tests.support.git import repository as git_repository

LOCAL = Remotes(git_protocols=("file", "https", "ssh"))


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return git_repository(tmp_path, "kind: ConfigMap\n")[0]


def attacks(canary: Path) -> list[dict[str, str]]:
    touch = f"touch {canary}"
    return [
        {"url": f"--upload-pack={touch}"},
        {"url": f"ext::sh -c touch% {canary}"},
        {"url": f"ssh://-oProxyCommand={touch.replace(' ', '%20')}/x"},
        {"url": f"-oProxyCommand={touch}@host:x"},
        {"ref": f"--upload-pack={touch}"},
        {"ref": "main --upload-pack=x"},
    ]


def test_the_model_refuses_every_attack_naming_the_field(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    for attack in attacks(canary):
        source = {"type": "git", "url": "https://git.example.com/t.git", "path": "t.yaml", **attack}
        with pytest.raises(ValidationError) as refused:
            TemplateSource.model_validate(source)
        [error] = refused.value.errors()
        assert error["loc"] == (next(iter(attack)),), error
    assert not canary.exists()


async def test_git_runs_nothing_even_when_the_checks_are_bypassed(
    tmp_path: Path, repository: Path
) -> None:
    canary = tmp_path / "canary"
    for attack in attacks(canary):
        fields = {"type": "git", "path": "web.yaml.j2", "url": repository.as_uri(), "ref": "main"}
        source = TemplateSource.model_construct(**{**fields, **attack})  # type: ignore[arg-type]
        with pytest.raises(SourceError):
            await fetch(source, LOCAL)
    assert not canary.exists()


async def test_a_repository_is_read_only_through_the_allowed_transports(repository: Path) -> None:
    source = TemplateSource(type="git", url=repository.as_uri(), path="web.yaml.j2")
    found = await fetch(source, LOCAL)
    assert found.content == "kind: ConfigMap\n"
    with pytest.raises(SourceError, match="url: file is not a transport Fabu may use"):
        await fetch(source, Remotes())
    with pytest.raises(SourceError, match="ref '--x' is not a branch"):
        await fetch(source, LOCAL, ref="--x")


REFS = [
    "main", "release/1.2", "v1.0.0", "a" * 40, "feature/x-y_z", "HEAD",
    "-x", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "/a", "a/", "a//b",
    "a.", ".a", "a/.b", "a.lock", "a/b.lock/c", "@", "a@{1}", "a\x01", "a\x7f", "a@b", "+x",
]  # fmt: skip


@pytest.mark.parametrize("ref", REFS)
def test_ref_names_follow_git_check_ref_format(ref: str) -> None:
    done = subprocess.run(
        ["git", "check-ref-format", "--allow-onelevel", ref], capture_output=True, check=False
    )
    git_accepts = done.returncode == 0 and not ref.startswith("-")
    assert (ref_problem(ref) is None) == git_accepts, ref


async def test_git_reads_a_ref_after_its_double_dash_as_a_ref(
    tmp_path: Path, repository: Path
) -> None:
    """The last line of defence, below every check: the ref reaches ``git fetch``
    after ``--``, so an option in it is a (bad) refspec, not an option."""
    canary = tmp_path / "canary"
    source = TemplateSource(type="git", url=repository.as_uri(), path="web.yaml.j2")
    with pytest.raises(SourceError, match="git fetch"):
        await _from_git(source, f"--upload-pack=touch {canary}", LOCAL)
    assert not canary.exists()
