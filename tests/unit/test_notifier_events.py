"""The notifier's events, one per subject it takes; a subject it has no event for is an error."""

import pytest

from services.notifier.consumer import EVENTS, UnknownSubject, event_of
from shared.messaging.messages import ReleaseCompleted, ReleaseFailed
from shared.messaging.subjects import NOTIFIER, Subjects


@pytest.mark.parametrize("prefix", ["", "fabu_eu"])
def test_every_subject_the_notifiers_consumer_takes_announces_its_own_event(prefix: str) -> None:
    names = Subjects(prefix)
    _, taken = names.consumer(NOTIFIER)

    events = [event_of(names, subject)[0] for subject in taken]

    assert sorted(events) == sorted(event for event, _ in EVENTS.values())
    assert len(set(events)) == len(taken)


def test_a_subject_reads_as_its_message_and_a_prefixed_one_as_the_same() -> None:
    names = Subjects("fabu_eu")

    assert event_of(names, names.completed) == ("succeeded", ReleaseCompleted)
    assert event_of(names, names.failed) == ("failed", ReleaseFailed)


@pytest.mark.parametrize(
    ("prefix", "subject"),
    [
        ("", "release.cancelled"),  # a release subject the notifier does not take
        ("", "release.requested"),
        ("fabu_eu", "release.failed"),  # another installation's (unprefixed) failure
        ("fabu_eu", "fabu_us.release.failed"),
    ],
)
def test_a_subject_with_no_event_is_an_error_not_a_failure(prefix: str, subject: str) -> None:
    with pytest.raises(UnknownSubject, match="no notification event"):
        event_of(Subjects(prefix), subject)
