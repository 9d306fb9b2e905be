using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Interval;

internal static partial class IntervalLog
{
    [LoggerMessage(EventId = 700, Level = LogLevel.Information, Message = "Recommended checkpoint interval {Recommended:F0} s (Young/Daly: periodic checkpoint cost {Cost:F2} s, MTBF {Mtbf:F0} s from {Preemptions} preemptions over {Span:F0} s); periodic checkpoints are {Observed} s apart")]
    public static partial void Recommended(ILogger logger, double recommended, double cost, double mtbf, int preemptions, double span, string observed);

    [LoggerMessage(EventId = 701, Level = LogLevel.Warning, Message = "Could not read the job's flush records for the checkpoint interval: {Error}; tried again later")]
    public static partial void RecordsUnreadable(ILogger logger, string error);
}
