from enum import StrEnum


class ReleaseState(StrEnum):
    # Waiting for someone other than the operator to approve (or reject) it.
    AWAITING_APPROVAL = "awaiting_approval"
    REQUESTED = "requested"
    RENDERED = "rendered"
    APPLIED = "applied"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # A canary step is healthy; waiting to be promoted (by someone, or after its pause).
    PAUSED = "paused"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    # A canary stopped by someone: its objects removed, the main Deployment untouched.
    ABORTED = "aborted"

    @property
    def final(self) -> bool:
        return self in (
            ReleaseState.SUCCEEDED,
            ReleaseState.FAILED,
            ReleaseState.CANCELLED,
            ReleaseState.REJECTED,
            ReleaseState.ABORTED,
        )
