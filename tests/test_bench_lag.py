"""The benchmark's loop-lag figure leaves out the API's samples that overlap a stall of the
idle process beside it, and only those."""

from __future__ import annotations

from bench.run import lag_outside_stalls

# [sleep began (s), its end (s), lag (ms)]
API = [[10.000, 10.003, 1.0], [10.003, 10.020, 15.0], [10.020, 10.026, 4.0]]


def test_a_sample_overlapping_a_stall_is_left_out() -> None:
    idle = [[10.004, 10.030, 24.0]]  # held up for 24 ms: the machine

    assert lag_outside_stalls(API, idle) == (1.0, 2, 1)


def test_an_idle_process_on_time_leaves_every_sample_in() -> None:
    idle = [[10.000, 10.002, 0.1], [10.004, 10.007, 1.0], [10.010, 10.014, 2.0]]

    assert lag_outside_stalls(API, idle) == (15.0, 0, 0)


def test_a_stall_elsewhere_in_time_leaves_the_samples_in() -> None:
    idle = [[11.000, 11.030, 28.0]]

    assert lag_outside_stalls(API, idle) == (15.0, 0, 1)
