"""The result email of a release: who gets it and what it says."""

from email.message import EmailMessage

from shared.models import Release, ReleaseState


def subject(release: Release) -> str:
    outcome = "succeeded" if release.state is ReleaseState.SUCCEEDED else "FAILED"
    return f"[Fabu] {release.service} {release.version} to {release.environment} {outcome}"


def duration_s(release: Release) -> float | None:
    if release.finished_at is None:
        return None
    return (release.finished_at - release.created_at).total_seconds()


def email(release: Release, sender: str, public_url: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(release.params.notify_emails)
    message["Subject"] = subject(release)
    # The same id for every attempt, so a mail system can drop a duplicate.
    message["Message-ID"] = f"<{release.id}.{release.state.value}@fabu>"
    took = duration_s(release)
    lines = [
        f"Service:     {release.service}",
        f"Environment: {release.environment}",
        f"Version:     {release.version} ({release.image})",
        f"Operator:    {release.operator}",
        f"Result:      {release.state.value}",
        f"Duration:    {took:.1f} s" if took is not None else "Duration:    -",
        f"Details:     {public_url.rstrip('/')}/api/v1/releases/{release.id}",
    ]
    if release.state is ReleaseState.FAILED:
        lines += ["", f"Reason: {release.reason}"]
        tail = [line.text for line in release.transcript[-5:]]
        if tail:
            lines += ["", "Last rollout lines:", *(f"  {t}" for t in tail)]
    message.set_content("\n".join(lines) + "\n")
    return message
