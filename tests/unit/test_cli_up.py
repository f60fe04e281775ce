"""`gorchester up` refuses a bad config before it starts anything, with validate's exit codes, and
restarts a child that exits with a back-off."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from cli.redis_local import DOWN_AFTER_MS, rejoin_after
from cli.supervision import CRASH_LOOP, RESTART_BACKOFF, Restart, Restarts, exit_reason, plan_restart, restart_line
from tests.support.cli import run_cli


def up(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("up", *args)


def test_an_invalid_config_lists_its_errors_and_starts_nothing(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    data_dir = tmp_path / "data"
    config.write_text(f"data_dir: '{data_dir}'\nservices:\n  - service_name: web\n    image: x\n    replicas: -1\n")
    result = up("--config", str(config))
    assert result.returncode == 1
    assert "services[0].replicas: must be at least 0" in result.stderr
    assert not data_dir.exists()


def test_an_unreadable_config_exits_2(tmp_path: Path) -> None:
    result = up("-f", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1


def test_nodes_must_be_at_least_one(tmp_path: Path) -> None:
    result = up("-f", str(tmp_path / "absent.yaml"), "--nodes", "0")
    assert result.returncode == 2
    assert "--nodes: '0' must be at least 1" in result.stderr


# Restarting a child that exited (cli/supervision.py): pure, with the times passed in.


def quick_exits(count: int, run: float = 1.0) -> list[Restart]:
    """`count` exits in a row, each `run` seconds after the restart before it started the child."""
    restarts, started_at, plans = Restarts(), 0.0, []
    for _ in range(count):
        plan = plan_restart(restarts, started_at, started_at + run)
        restarts, started_at = plan.restarts, plan.due_at
        plans.append(plan)
    return plans


def test_quick_exits_wait_twice_as_long_each_time_up_to_the_cap() -> None:
    plans = quick_exits(9)
    assert [plan.delay for plan in plans] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert [plan.restarts.total for plan in plans] == list(range(1, 10))
    assert plans[0].due_at == 1.0 + 0.5


def test_a_run_of_a_minute_starts_the_back_off_afresh() -> None:
    after_a_crash_loop = quick_exits(6)[-1].restarts
    ran_long = plan_restart(after_a_crash_loop, started_at=100.0, now=100.0 + RESTART_BACKOFF.reset_after)
    assert (ran_long.delay, ran_long.restarts) == (0.5, Restarts(total=7, quick=1))
    just_short = plan_restart(after_a_crash_loop, started_at=100.0, now=100.0 + RESTART_BACKOFF.reset_after - 0.001)
    assert (just_short.delay, just_short.restarts) == (30.0, Restarts(total=7, quick=7))


def test_a_redis_data_server_of_a_replicated_set_waits_out_the_failover_before_its_restart() -> None:
    """Started again at once, a killed master would be master again before the sentinels saw it down."""
    assert rejoin_after("redis") == rejoin_after("redis-replica-2") > DOWN_AFTER_MS / 1000 + 3.3 - 1
    assert rejoin_after("sentinel-1") == 0.0
    plan = plan_restart(Restarts(), started_at=0.0, now=100.0, least=rejoin_after("redis"))
    assert plan.delay == rejoin_after("redis") and plan.due_at == 100.0 + plan.delay
    assert plan_restart(quick_exits(8)[-1].restarts, 0.0, 1.0, least=rejoin_after("redis")).delay == 30.0


def test_a_child_is_never_given_up_on_but_a_crash_loop_is_named() -> None:
    plans = quick_exits(200)
    assert all(plan.delay == RESTART_BACKOFF.cap for plan in plans[6:])  # one start per 30 s: no storm
    assert [plan.crash_loop for plan in plans[:CRASH_LOOP]] == [False] * (CRASH_LOOP - 1) + [True]
    assert all(plan.crash_loop for plan in plans[CRASH_LOOP:])


def test_the_restart_line_says_how_the_child_ended_and_when_it_starts_again() -> None:
    log = Path("/data/logs/node-1.log")
    first, second = quick_exits(2)
    assert restart_line("node-1", exit_reason(-signal.SIGKILL), second, log) == (
        "node-1 exited (killed by SIGKILL); restarting in 1.0s (restart 2)"
    )
    assert restart_line("api", exit_reason(1), first, log) == "api exited (status 1); restarting in 0.5s (restart 1)"
    assert exit_reason(0) == "exited (status 0)"
    assert exit_reason(-200) == "exited (killed by signal 200)"
    looping = quick_exits(CRASH_LOOP)[-1]
    assert restart_line("api", exit_reason(1), looping, log) == (
        "api exited (status 1); restarting in 8.0s (restart 5); it keeps failing: 5 exits in a row, "
        "each within 60s of its start; see /data/logs/node-1.log"
    )
