using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Resume;

/// <summary>
/// Answers "what do I resume from?": the newest committed checkpoint whose manifest and files check
/// out (and, by the CHECKPOINT_VERIFY_ON_RESUME policy, whose bytes hash to the manifest). A
/// damaged checkpoint is skipped and counted, never handed to a trainer.
/// </summary>
/// <remarks>
/// Every rank of a pod asks at start, at the same moment: they share one lookup, so a checkpoint
/// is read and hashed once rather than once per rank. A later question gets a fresh lookup. A
/// lookup that makes no progress for <see cref="StallTimeout"/> (a read from a stalled NFS server
/// that never returns) fails its callers and is abandoned, so the next question starts afresh
/// instead of joining it for good.
/// </remarks>
internal sealed class ResumeLocator
{
    /// <summary>
    /// How long a lookup may go without reading anything. Not a limit on the whole lookup: hashing a
    /// large checkpoint rightly takes minutes, and makes progress all along.
    /// </summary>
    public static readonly TimeSpan StallTimeout = TimeSpan.FromSeconds(60);

    private readonly Func<Action, CancellationToken, CommittedCheckpoint?> _find;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly object _gate = new();
    private Task<CommittedCheckpoint?>? _lookup;

    public ResumeLocator(
        CheckpointStore store, IOptions<SidecarOptions> options, CheckpointMetrics metrics, TimeProvider time, ILogger<ResumeLocator> logger)
        : this(
            (onProgress, cancellationToken) => store.FindLatestValid(
                options.Value.VerifyOnResume,
                options.Value.CopyBufferBytes,
                (_, _) => metrics.RecordResumeVerifyFailure(),
                onProgress,
                cancellationToken),
            time,
            logger)
    {
    }

    /// <param name="find">The lookup itself: calls its first argument whenever it moves on.</param>
    internal ResumeLocator(Func<Action, CancellationToken, CommittedCheckpoint?> find, TimeProvider time, ILogger logger)
    {
        _find = find;
        _time = time;
        _logger = logger;
    }

    /// <exception cref="ResumeLookupStalledException">The lookup made no progress for <see cref="StallTimeout"/>.</exception>
    public Task<CommittedCheckpoint?> FindAsync(CancellationToken cancellationToken)
    {
        Task<CommittedCheckpoint?> lookup;
        lock (_gate)
        {
            if (_lookup is null || _lookup.IsCompleted)
            {
                _lookup = Lookup.Start(this);
            }

            lookup = _lookup;
        }

        return lookup.WaitAsync(cancellationToken);
    }

    /// <summary>One search of the storage, shared by every caller that asks while it runs.</summary>
    private sealed class Lookup : IDisposable
    {
        private readonly ResumeLocator _owner;
        private readonly TaskCompletionSource<CommittedCheckpoint?> _answer = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly CancellationTokenSource _abandoned = new();
        private readonly ITimer _watchdog;
        private readonly object _gate = new();
        private long _lastProgress;
        private bool _ended;

        private Lookup(ResumeLocator owner)
        {
            _owner = owner;
            _lastProgress = owner._time.GetTimestamp();
            var period = StallTimeout / 4;
            _watchdog = owner._time.CreateTimer(_ => CheckForStall(), null, period, period);
            // A read from a stalled server may never return: a thread of its own rather than one the
            // pool needs, and not tied to one caller's cancellation, since other callers share it.
            _ = Task.Factory.StartNew(Run, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }

        /// <returns>The answer; the search disposes of itself when it returns.</returns>
        public static Task<CommittedCheckpoint?> Start(ResumeLocator owner) => new Lookup(owner)._answer.Task;

        /// <summary>Once the search has returned; a search stuck for good keeps its few resources.</summary>
        public void Dispose()
        {
            lock (_gate)
            {
                _ended = true;
                _watchdog.Dispose();
                _abandoned.Dispose();
            }
        }

        private void Run()
        {
            try
            {
                _answer.TrySetResult(_owner._find(OnProgress, _abandoned.Token));
            }
            catch (OperationCanceledException) when (_abandoned.IsCancellationRequested)
            {
                // Given up as stalled: its callers have had their answer.
            }
            catch (Exception e)
            {
                _answer.TrySetException(e);
            }
            finally
            {
                Dispose();
            }
        }

        private void OnProgress() => Interlocked.Exchange(ref _lastProgress, _owner._time.GetTimestamp());

        private void CheckForStall()
        {
            TimeSpan idle;
            lock (_gate)
            {
                idle = _owner._time.GetElapsedTime(Interlocked.Read(ref _lastProgress));
                if (_ended || idle < StallTimeout)
                {
                    return;
                }

                _ended = true;
                _watchdog.Dispose();
                // Under the gate, so the search ending now cannot dispose the source first.
                _abandoned.Cancel();
            }

            if (_answer.TrySetException(new ResumeLookupStalledException(idle)))
            {
                ResumeLog.LookupStalled(_owner._logger, idle.TotalSeconds);
            }
        }
    }
}

/// <summary>The shared lookup made no progress for <see cref="ResumeLocator.StallTimeout"/>; asking again starts a fresh one.</summary>
internal sealed class ResumeLookupStalledException(TimeSpan idle)
    : IOException($"looking for the checkpoint to resume from made no progress for {idle.TotalSeconds:F0} s (is the checkpoint storage stalled?); ask again")
{
}
