"""checkpoint_every="auto": the recommended seconds turned into steps (pure arithmetic, a fake clock)."""

import pytest

from checkpoint_sdk._interval import MIN_STEP_SAMPLES, StepClock, interval_steps


def test_interval_steps_is_recommended_seconds_over_step_seconds():
    assert interval_steps(60.0, 0.5) == 120
    assert interval_steps(1138.4, 0.25) == 4554  # round(4553.6)


def test_interval_steps_unknown_while_either_input_is():
    assert interval_steps(None, 0.5) is None
    assert interval_steps(60.0, None) is None


def test_interval_steps_at_least_one_step():
    assert interval_steps(0.01, 2.0) == 1
    assert interval_steps(0.0, 0.5) == 1
    assert interval_steps(5.0, 0.0) == 1


def test_interval_steps_never_shorter_than_a_checkpoint_stall():
    # A 2 s recommendation but each checkpoint holds the loop 10 s: every 10 s of steps, not every 2 s.
    assert interval_steps(2.0, 0.5, checkpoint_seconds=10.0) == 20
    assert interval_steps(30.0, 0.5, checkpoint_seconds=10.0) == 60


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run_steps(clock, steps_clock, start, count, seconds):
    for step in range(start, start + count):
        steps_clock.boundary(step)
        clock.now += seconds


def test_step_clock_needs_a_few_steps_then_takes_the_median():
    clock = FakeClock()
    steps = StepClock(clock)
    run_steps(clock, steps, 0, MIN_STEP_SAMPLES, 0.1)  # MIN_STEP_SAMPLES calls: one gap fewer
    assert steps.step_seconds is None
    run_steps(clock, steps, MIN_STEP_SAMPLES, 1, 0.1)
    assert steps.step_seconds == pytest.approx(0.1)
    # One slow step (a busy node) does not move the median.
    run_steps(clock, steps, MIN_STEP_SAMPLES + 1, 1, 5.0)
    run_steps(clock, steps, MIN_STEP_SAMPLES + 2, 3, 0.1)
    assert steps.step_seconds == pytest.approx(0.1)
    assert steps.steps_for(10.0) == 100


def test_step_clock_leaves_out_the_gap_holding_a_checkpoint_and_counts_skipped_step_numbers():
    clock = FakeClock()
    steps = StepClock(clock)
    run_steps(clock, steps, 0, 5, 0.2)
    steps.boundary(5)
    clock.now += 30.0  # a checkpoint of 29.8 s in this gap
    steps.checkpoint_taken(29.8)
    steps.boundary(6)
    assert steps.step_seconds == pytest.approx(0.2)
    assert steps.checkpoint_seconds == pytest.approx(29.8)
    # Called every 4 steps (gradient accumulation): 0.8 s per call is 0.2 s per step.
    for step in range(10, 40, 4):
        clock.now += 0.8
        steps.boundary(step)
    assert steps.step_seconds == pytest.approx(0.2)
    # The recommendation of 10 s is shorter than a checkpoint's stall: one per 29.8 s of steps.
    assert steps.steps_for(10.0) == 149
    assert steps.steps_for(None) is None
