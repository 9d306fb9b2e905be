using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Resume;

/// <summary>
/// Answers "what do I resume from?": the newest committed checkpoint whose manifest and files check
/// out (and, by the CHECKPOINT_VERIFY_ON_RESUME policy, whose bytes hash to the manifest). A
/// damaged checkpoint is skipped and counted, never handed to a trainer.
/// </summary>
internal sealed class ResumeLocator(CheckpointStore store, IOptions<SidecarOptions> options, CheckpointMetrics metrics)
{
    public Task<CommittedCheckpoint?> FindAsync(CancellationToken cancellationToken) =>
        // Hashing a large checkpoint takes seconds: keep it off the request thread.
        Task.Run(() => store.FindLatestValid(
            options.Value.VerifyOnResume,
            options.Value.CopyBufferBytes,
            (_, _) => metrics.RecordResumeVerifyFailure(),
            cancellationToken), cancellationToken);
}
