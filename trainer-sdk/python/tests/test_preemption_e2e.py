"""The whole loop with real processes: sidecar and example trainer, a real SIGTERM to both mid-training, the
checkpoint checked with xxhsum, and a resumed trainer that ends bit-identical (parameters AND optimizer state) to
a run that was never interrupted."""

import re
import time

from conftest import SIGKILL, SIGTERM, assert_verifies, elapsed_since, step_id

TOTAL_STEPS = 300


def finished_hash(trainer) -> str:
    match = trainer.wait_for_line(rf"^finished at step {TOTAL_STEPS} params-sha256 ([0-9a-f]{{64}})$")
    assert trainer.wait_exit() == 0, trainer.output
    return match.group(1)


def test_sigterm_mid_training_commits_and_resume_is_bit_exact(procs, dirs, tmp_path):
    # Uninterrupted reference, on its own sidecar and storage.
    from conftest import Processes, TestDirs

    reference_dirs = TestDirs()
    reference = Processes(reference_dirs)
    try:
        reference.sidecar()
        trainer = reference.trainer("--steps", str(TOTAL_STEPS), "--checkpoint-every", "0", name="reference")
        trainer.wait_for_line("^starting fresh$")
        uninterrupted = finished_hash(trainer)
    finally:
        reference.cleanup()

    sidecar = procs.sidecar()
    trainer = procs.trainer("--steps", str(TOTAL_STEPS), "--checkpoint-every", "100", "--step-delay-ms", "20")
    trainer.wait_for_line("^starting fresh$")
    trainer.wait_for_line("^step 50 ")
    sidecar.signal(SIGTERM)
    trainer.signal(SIGTERM)
    written = trainer.wait_for_line(r"^checkpoint (\S+) written at step (\d+) \(preemption\)$")
    checkpoint_id, step = written.group(1), int(written.group(2))
    assert trainer.wait_exit() == 1, "the SDK exits with the preemption exit code once committed"
    assert sidecar.wait_exit() == 0, sidecar.output
    sidecar.wait_for_line(rf"Checkpoint {re.escape(checkpoint_id)} \(preemption, step {step}\) committed")
    assert "exiting with code 1: preemption checkpoint" in trainer.output

    assert 50 <= step < TOTAL_STEPS
    assert dirs.latest() == step_id(step)
    m = assert_verifies(dirs.job / step_id(step))
    assert m["reason"] == "preemption" and m["step"] == step
    assert sorted(f["path"] for f in m["files"]) == ["rank-0/model.pt", "rank-0/optimizer.pt", "rank-0/trainer_state.pt"]
    assert not dirs.partials()

    procs.sidecar()
    resumed = procs.trainer("--steps", str(TOTAL_STEPS), "--checkpoint-every", "0", name="resumed")
    resumed.wait_for_line(rf"^resumed from checkpoint {step_id(step)} at step {step}$")
    assert finished_hash(resumed) == uninterrupted, "parameters or optimizer state differ from the uninterrupted run"


def test_stuck_step_exits_at_the_deadline(procs, dirs):
    """A trainer stuck in a long step when the pod is preempted: the watchdog exits it at the deadline."""
    grace, margin = 3, 1
    sidecar = procs.sidecar(grace=grace, margin=margin)
    trainer = procs.trainer("--steps", "100", "--checkpoint-every", "0", "--step-delay-ms", "60000")
    trainer.wait_for_line(r"^step 1 takes 60 s$")  # inside the long step, past its step boundary
    sidecar.wait_for_line(r"Trainer \S+ \(rank 0, .*\) attached")
    start = time.monotonic()
    sidecar.signal(SIGTERM)
    trainer.signal(SIGTERM)
    assert trainer.wait_exit(timeout=grace + 10) == 1
    took = elapsed_since(start)
    assert took <= grace + 1.5, f"the trainer outlived the deadline: exited {took:.1f} s after SIGTERM"
    # Its watchdog and the sidecar's own deadline fire together; either way the trainer says why it exits.
    assert re.search(r"exiting with code 1: (the preemption deadline .* passed|the sidecar went away while the pod "
                     r"terminates)", trainer.output), trainer.output
    assert sidecar.wait_exit(timeout=grace + 10) == 1, "a flush that missed its deadline ends the sidecar with 1"
    assert dirs.latest() is None and not dirs.partials()


def test_sigterm_with_sidecar_gone_exits_at_once(procs, dirs):
    sidecar = procs.sidecar()
    trainer = procs.trainer("--steps", "100000", "--checkpoint-every", "0", "--step-delay-ms", "20")
    trainer.wait_for_line("^step 10 ")
    sidecar.signal(SIGKILL)
    sidecar.wait_exit(10)
    trainer.wait_for_line("detached from the checkpoint sidecar")
    start = time.monotonic()
    trainer.signal(SIGTERM)
    assert trainer.wait_exit(timeout=15) == 1
    assert elapsed_since(start) < 6, "nothing to wait for when the sidecar is gone"
    # The SIGTERM notice fails at once, or the background re-attach learns first that the sidecar is gone;
    # either way the trainer says why it exits.
    assert re.search(r"exiting with code 1: (could not tell the checkpoint sidecar about SIGTERM|the sidecar went "
                     r"away while the pod terminates)", trainer.output), trainer.output
