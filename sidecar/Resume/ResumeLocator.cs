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
/// <remarks>
/// Every rank of a pod asks at start, at the same moment: they share one lookup, so a checkpoint
/// is read and hashed once rather than once per rank. A later question gets a fresh lookup.
/// </remarks>
internal sealed class ResumeLocator(CheckpointStore store, IOptions<SidecarOptions> options, CheckpointMetrics metrics)
{
    private readonly object _gate = new();
    private Task<CommittedCheckpoint?>? _lookup;

    public Task<CommittedCheckpoint?> FindAsync(CancellationToken cancellationToken)
    {
        Task<CommittedCheckpoint?> lookup;
        lock (_gate)
        {
            if (_lookup is null || _lookup.IsCompleted)
            {
                // Hashing a large checkpoint takes seconds: keep it off the request thread. Not tied
                // to one caller's cancellation, since other callers share it.
                _lookup = Task.Run(() => store.FindLatestValid(
                    options.Value.VerifyOnResume,
                    options.Value.CopyBufferBytes,
                    (_, _) => metrics.RecordResumeVerifyFailure(),
                    CancellationToken.None));
            }

            lookup = _lookup;
        }

        return lookup.WaitAsync(cancellationToken);
    }
}
