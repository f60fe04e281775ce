"""The scheduler's waits between tries to reach Redis again (scheduler/loop.py)."""

from scheduler.loop import Reconnect


def test_the_schedulers_wait_to_reach_redis_again_starts_afresh_at_each_outage():
    """Doubling within an outage up to a second; from the first wait again once Redis answered (it used
    to carry over from one outage to the next, so a third failover waited 5 s)."""
    reconnect = Reconnect()
    first = [reconnect.after_failure(answered=False) for _ in range(5)]
    assert first == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert reconnect.after_failure(answered=True) == 0.2
    assert reconnect.after_failure(answered=False) == 0.4
