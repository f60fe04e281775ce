"""worker.fanout.each: the agent's graceful stops overlap instead of queueing 10 s each."""

from __future__ import annotations

import threading

import pytest

from worker.fanout import each


def test_items_are_worked_on_at_once():
    # Each item waits until all three are in flight: one at a time, the barrier would break.
    barrier = threading.Barrier(3, timeout=5)
    done: list[int] = []
    each(lambda item: (barrier.wait(), done.append(item)), [1, 2, 3])
    assert sorted(done) == [1, 2, 3]


def test_every_item_is_tried_then_the_first_failure_is_raised():
    tried: list[int] = []

    def work(item: int) -> None:
        tried.append(item)
        if item in (2, 3):
            raise ValueError(f"item {item}")

    with pytest.raises(ValueError, match="item 2"):
        each(work, [1, 2, 3, 4])
    assert sorted(tried) == [1, 2, 3, 4]


def test_a_limit_of_one_runs_in_order_on_this_thread():
    seen: list[tuple[int, str]] = []
    each(lambda item: seen.append((item, threading.current_thread().name)), [1, 2], limit=1)
    assert seen == [(1, threading.current_thread().name), (2, threading.current_thread().name)]
