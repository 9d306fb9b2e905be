using System.Globalization;
using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Reporting;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Interval;

/// <summary>
/// Exports the job's Young/Daly checkpoint interval (<see cref="CheckpointInterval"/>) and its inputs
/// as metrics, from the flush records every pod of the job left on the shared storage, which outlive
/// the pods and so hold the job's preemptions. Reads them at start, after each flush of this pod, and
/// every few minutes (the MTBF grows while no preemption comes).
/// </summary>
/// <remarks>
/// Storage I/O runs on this service's own loop, never on the flush's path. This pod's own flushes are
/// also kept from their reports: the record of a flush may still be being written when it is reported.
/// </remarks>
internal sealed class CheckpointIntervalAdvisor(
    FlushRecordStore records,
    CheckpointMetrics metrics,
    IOptions<SidecarOptions> options,
    TimeProvider time,
    ILogger<CheckpointIntervalAdvisor> logger) : BackgroundService, IFlushReporter
{
    /// <summary>As long as a flush record store keeps records: older reports are on storage or gone from it too.</summary>
    private const int OwnRecordsKept = 100;

    private static readonly TimeSpan Refresh = TimeSpan.FromMinutes(5);

    /// <summary>A recommendation that moved by less than this fraction of the one logged is not logged again.</summary>
    private const double LogChange = 0.1;

    private readonly object _gate = new();
    private readonly Queue<FlushRecord> _own = new();
    private readonly IntervalPolicy _policy = new(
        options.Value.MtbfMinPreemptions, TimeSpan.FromSeconds(options.Value.MtbfPriorSeconds));
    private TaskCompletionSource _flushed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private string? _readError;
    private TimeSpan? _loggedRecommendation;

    /// <summary>Ticks of the newest recommendation, or -1: read on gRPC threads while this service's loop writes it.</summary>
    private long _currentTicks = -1;

    /// <summary>The newest recommended interval, null while not known; told to trainers (Attached, CheckpointOutcome).</summary>
    public TimeSpan? Current => Interlocked.Read(ref _currentTicks) is var ticks and >= 0 ? TimeSpan.FromTicks(ticks) : null;

    public Task PreemptionStartedAsync(PreemptionStarted started, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task FlushEndedAsync(FlushReport report, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            _own.Enqueue(FlushRecordReporter.ToRecord(report, options.Value.PodNameOrHost));
            if (_own.Count > OwnRecordsKept)
            {
                _own.Dequeue();
            }
        }

        Interlocked.Exchange(ref _flushed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        return Task.CompletedTask;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            // Taken before reading, so a flush reported meanwhile wakes the wait below.
            var flushed = Volatile.Read(ref _flushed).Task;
            // A storage that hangs holds this loop only, never the host's start.
            await Task.Run(Update, stoppingToken).ConfigureAwait(false);
            try
            {
                await flushed.WaitAsync(Refresh, time, stoppingToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
            }
        }
    }

    /// <summary>Reads the records and exports what they say; returns it (for tests).</summary>
    internal IntervalRecommendation Update()
    {
        var known = ReadStorage();
        lock (_gate)
        {
            known.AddRange(_own);
        }

        var recommendation = CheckpointInterval.FromRecords(known, time.GetUtcNow(), _policy);
        metrics.SetIntervalRecommendation(recommendation);
        Interlocked.Exchange(ref _currentTicks, recommendation.Recommended is { } value ? value.Ticks : -1);
        if (recommendation is { Recommended: { } recommended, PeriodicCost: { } cost, Mtbf: { } mtbf } && IsNews(recommended))
        {
            // Once per value worth telling, not once per refresh: the MTBF, and so the interval, grow every second.
            _loggedRecommendation = recommended;
            var observed = recommendation.ObservedPeriodicInterval is { } o
                ? o.TotalSeconds.ToString("F0", CultureInfo.InvariantCulture)
                : "unknown";
            var span = recommendation.ObservedSpan.TotalSeconds;
            IntervalLog.Recommended(logger, recommended.TotalSeconds, cost.TotalSeconds, mtbf.TotalSeconds, recommendation.Preemptions, span, observed);
        }

        return recommendation;
    }

    private bool IsNews(TimeSpan recommended) =>
        _loggedRecommendation is not { } logged || (recommended - logged).Duration() > logged * LogChange;

    private List<FlushRecord> ReadStorage()
    {
        try
        {
            var read = records.ReadTrusted().ToList();
            _readError = null;
            return read;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Once per kind of failure: a storage that stays away is not a log line every few minutes.
            var error = StorageErrors.Describe(e);
            if (error != _readError)
            {
                _readError = error;
                IntervalLog.RecordsUnreadable(logger, error);
            }

            return [];
        }
    }
}
