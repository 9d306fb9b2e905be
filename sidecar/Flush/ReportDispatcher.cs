using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// Hands flush reports (Events, flush records, pushes) to every reporter in the background: they do
/// network and storage I/O, which must never hold the coordinator or fail a flush.
/// </summary>
internal sealed class ReportDispatcher(IEnumerable<IFlushReporter> reporters, ILogger logger)
{
    private readonly IReadOnlyList<IFlushReporter> _reporters = reporters.ToList();
    private readonly List<Task> _reporting = [];
    private readonly object _gate = new();

    /// <summary>Completes when every report started so far has finished.</summary>
    public Task Drained
    {
        get
        {
            lock (_gate)
            {
                return Task.WhenAll(_reporting);
            }
        }
    }

    public void Dispatch(Func<IFlushReporter, Task> report)
    {
        lock (_gate)
        {
            foreach (var reporter in _reporters)
            {
                _reporting.Add(ReportSafelyAsync(reporter, report));
            }

            _reporting.RemoveAll(t => t.IsCompleted);
        }
    }

    private async Task ReportSafelyAsync(IFlushReporter reporter, Func<IFlushReporter, Task> report)
    {
        try
        {
            // Off the caller's lock and thread.
            await Task.Yield();
            await report(reporter).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            FlushLog.ReporterFailed(logger, reporter.GetType().Name, e.Message);
        }
    }
}
