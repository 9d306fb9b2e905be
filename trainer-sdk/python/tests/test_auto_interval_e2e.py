"""checkpoint_every="auto" against a real sidecar: the trainer follows the recommended interval the sidecar computes
from the job's flush records on storage, and uses auto_fallback_every while the sidecar knows none."""

import datetime as dt
import json
import re

WRITTEN = r"^checkpoint \S+ written at step (\d+) \(periodic\)$"
FOLLOWING = (r"checkpoint_every=auto: the sidecar recommends a checkpoint every ([\d.]+) s; at ([\d.e-]+) s per step "
             r"that is every (\d+) steps")
STEP_DELAY = 0.020


def write_record(records, checkpoint_id, reason, at, stall):
    """A flush record as the sidecar writes it (the published format, named by end time and id)."""
    ended = at + dt.timedelta(seconds=stall + 1)
    record = {
        "formatVersion": 1, "checkpointId": checkpoint_id, "pod": "earlier-pod", "reason": reason,
        "outcome": "committed", "step": 10, "triggeredAt": at.isoformat(), "endedAt": ended.isoformat(),
        "gracePeriodSeconds": 30, "deadlineMissed": False,
        "timings": {"notifySeconds": stall / 2, "dumpSeconds": stall / 2, "copySeconds": 0.5, "verifySeconds": 0.2,
                    "commitSeconds": 0.3, "totalSeconds": stall + 1, "budgetUsedRatio": (stall + 1) / 30,
                    "bytes": 1 << 20, "commitWaitSeconds": 0},
    }
    name = f"{ended.astimezone(dt.timezone.utc).strftime('%Y%m%dT%H%M%S%f')[:-3]}Z-{checkpoint_id}.json"
    (records / name).write_text(json.dumps(record))


def test_auto_follows_a_recommendation_much_shorter_than_the_fallback(procs, dirs):
    # The last 2 minutes of the job: periodic checkpoints stalling 0.02 s and two preemptions, MTBF about 60 s:
    # sqrt(2 * 0.02 * 60) = 1.5 s, growing slowly while the test runs (the MTBF counts the time since).
    records = dirs.job / "flush-records"
    records.mkdir(parents=True)
    now = dt.datetime.now(dt.timezone.utc)
    for i in range(9):
        write_record(records, f"periodic-{i}", "periodic", now - dt.timedelta(seconds=120 - 12 * i), 0.02)
    for ago in (100, 50):
        write_record(records, f"preemption-{ago}", "preemption", now - dt.timedelta(seconds=ago), 2)
    sidecar = procs.sidecar()
    sidecar.wait_for_line(r"Recommended checkpoint interval")

    trainer = procs.trainer("--steps", "1000000", "--checkpoint-every", "auto", "--auto-fallback-every", "100000",
                            "--step-delay-ms", str(int(STEP_DELAY * 1000)))
    following = trainer.wait_for_line(FOLLOWING)
    recommended = float(following.group(1))
    assert 1.0 <= recommended <= 10.0, following.group(0)
    steps = [int(trainer.wait_for_line(WRITTEN).group(1))]
    wanted = 4
    while len(steps) < wanted:
        pattern = rf"^checkpoint \S+ written at step ((?!{'|'.join(map(str, steps))}\b)\d+) \(periodic\)$"
        steps.append(int(trainer.wait_for_line(pattern).group(1)))
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    # Far below the fallback: it follows the recommendation. A step takes at least the 20 ms sleep, so a gap of
    # recommended seconds can hold no more steps than that (with room for the recommendation growing meanwhile).
    assert all(1 <= gap <= recommended * 2 / STEP_DELAY for gap in gaps), (steps, following.group(0))
    # And the gaps are the step count the SDK computed from its measured step time (re-logged on a 20 % change).
    everys = [int(m.group(3)) for m in re.finditer(FOLLOWING, trainer.output)]
    assert all(min(everys) * 0.75 <= gap <= max(everys) * 1.25 for gap in gaps), (steps, everys)


def test_auto_without_a_recommendation_uses_the_fallback(procs, dirs):
    procs.sidecar()
    trainer = procs.trainer("--steps", "1000000", "--checkpoint-every", "auto", "--auto-fallback-every", "15",
                            "--step-delay-ms", "5")
    for expected in (15, 30, 45):
        assert int(trainer.wait_for_line(rf"^checkpoint \S+ written at step ({expected}) \(periodic\)$").group(1)) \
            == expected
    assert "checkpoint_every=auto: the sidecar recommends" not in trainer.output
