from scheduler.backoff import Backoff, never_ran, wants_restart
from shared.config import RestartPolicy
from shared.records import TaskRecord, TaskState


def task(state: TaskState, **kwargs) -> TaskRecord:
    return TaskRecord(id="w.1", service="w", slot=1, state=state, **kwargs)


def test_delay_is_immediate_then_doubles_up_to_the_cap():
    backoff = Backoff(base=1.0, cap=10.0, reset_after=60.0)
    assert [backoff.delay(n) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert backoff.delay(2**53) == 10.0  # at once: the doubling is not computed past the cap


def test_streak_resets_after_a_clean_run():
    backoff = Backoff(base=1.0, cap=10.0, reset_after=60.0)
    crashed_fast = task(TaskState.FAILED, started_at=100.0, finished_at=101.0, crash_streak=4)
    ran_long = task(TaskState.FAILED, started_at=100.0, finished_at=200.0, crash_streak=4)
    never_started = task(TaskState.FAILED, finished_at=101.0, crash_streak=2)
    assert backoff.streak(crashed_fast) == 4
    assert backoff.streak(ran_long) == 0
    assert backoff.streak(never_started) == 2
    assert backoff.due_at(crashed_fast) == 101.0 + 8.0
    assert backoff.due_at(ran_long) == 200.0


def test_restart_policies():
    # Their containers ran and then exited: the policy decides.
    failed = task(TaskState.FAILED, started_at=100.0, finished_at=101.0)
    stopped = task(TaskState.STOPPED, started_at=100.0, finished_at=101.0)
    user_stopped = task(TaskState.STOPPED, started_at=100.0, finished_at=101.0, stop_requested=True)
    assert not wants_restart(RestartPolicy.NO, failed)
    assert wants_restart(RestartPolicy.ON_FAILURE, failed)
    assert not wants_restart(RestartPolicy.ON_FAILURE, stopped)
    assert wants_restart(RestartPolicy.ALWAYS, stopped)
    assert wants_restart(RestartPolicy.ALWAYS, user_stopped)
    assert wants_restart(RestartPolicy.UNLESS_STOPPED, stopped)
    assert not wants_restart(RestartPolicy.UNLESS_STOPPED, user_stopped)
    assert not wants_restart(RestartPolicy.ALWAYS, task(TaskState.RUNNING))


def test_a_replica_whose_container_never_ran_is_retried_whatever_the_policy():
    # The engine refused to create or start it (image missing, network trouble): infrastructure.
    refused = task(TaskState.FAILED, finished_at=101.0, reason="image pull failed: x", crash_streak=3)
    for policy in RestartPolicy:
        assert wants_restart(policy, refused), policy
    assert never_ran(refused)
    assert not never_ran(task(TaskState.FAILED, started_at=100.0, finished_at=101.0))
    assert not never_ran(task(TaskState.STOPPED, finished_at=101.0))
    # ... with the restart back-off all the same.
    assert Backoff(base=1.0, cap=10.0, reset_after=60.0).due_at(refused) == 101.0 + 4.0
