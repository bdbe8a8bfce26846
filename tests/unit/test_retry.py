"""The deployer's waits before trying an unreachable cluster again."""

from services.deployer.consumer import MAX_ATTEMPTS, retry_after


def test_waits_double_to_five_times_the_first_and_ride_out_an_api_server_restart() -> None:
    waits = [retry_after(3.0, attempt) for attempt in range(1, MAX_ATTEMPTS)]

    assert waits == [3, 6, 12, 15, 15, 15, 15, 15]
    assert sum(waits) == 96
