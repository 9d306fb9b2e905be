"""``checkpoint_every="auto"``: the sidecar's recommended interval (seconds) turned into training steps.

The sidecar knows the job's checkpoint cost and preemption rate, not how long a step takes; the trainer knows that. So
the SDK measures its own step time (between ``should_checkpoint`` calls, on a monotonic clock) and what a checkpoint
holds the loop for, and converts. Kept apart from the client so the arithmetic is tested without a sidecar.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from typing import Callable, Deque, Optional, Tuple

#: The value of ``checkpoint_every`` that follows the sidecar's recommendation.
AUTO = "auto"
#: Recent steps only: the step time follows the job as it changes (a new phase, a slower data loader).
STEP_SAMPLES = 32
#: Fewer measured steps than this is no step time yet: the first steps (compilation, warm-up) are not typical.
MIN_STEP_SAMPLES = 3
STALL_SAMPLES = 8


def interval_steps(recommended_seconds: Optional[float], step_seconds: Optional[float],
                   checkpoint_seconds: Optional[float] = None) -> Optional[int]:
    """Steps between checkpoints for a recommended interval, or None while either input is unknown.

    At least one step; and the interval is never shorter than one checkpoint's stall (``checkpoint_seconds``): a
    recommendation from costs measured on other pods (or before the model grew) must not make this trainer spend more
    time checkpointing than training.
    """
    if recommended_seconds is None or step_seconds is None or recommended_seconds < 0:
        return None
    seconds = max(recommended_seconds, checkpoint_seconds or 0.0)
    if step_seconds <= 0:
        return 1
    return max(1, int(round(seconds / step_seconds)))


class StepClock:
    """Median step duration and checkpoint stall of recent steps, measured at the step boundaries."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._steps: Deque[float] = deque(maxlen=STEP_SAMPLES)
        self._stalls: Deque[float] = deque(maxlen=STALL_SAMPLES)
        self._last: Optional[Tuple[int, float]] = None
        self._checkpointed = False

    def boundary(self, step: int) -> None:
        """A ``should_checkpoint(step)`` call: the time since the previous one, per step, is a sample."""
        now = self._clock()
        last = self._last
        # A gap that held a checkpoint is not a step's duration (the stall is measured on its own); a step number that
        # did not grow (a resume, a repeated call) has no duration per step.
        if last is not None and step > last[0] and not self._checkpointed:
            self._steps.append((now - last[1]) / (step - last[0]))
        self._last = (step, now)
        self._checkpointed = False

    def checkpoint_taken(self, seconds: float) -> None:
        """A checkpoint block held the training loop for ``seconds``."""
        self._stalls.append(max(0.0, seconds))
        self._checkpointed = True

    @property
    def step_seconds(self) -> Optional[float]:
        """The median of recent steps: one slow step (a garbage collection, a busy node) does not move it."""
        return statistics.median(self._steps) if len(self._steps) >= MIN_STEP_SAMPLES else None

    @property
    def checkpoint_seconds(self) -> Optional[float]:
        return statistics.median(self._stalls) if self._stalls else None

    def steps_for(self, recommended_seconds: Optional[float]) -> Optional[int]:
        return interval_steps(recommended_seconds, self.step_seconds, self.checkpoint_seconds)
