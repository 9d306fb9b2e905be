using System.Text.Json;
using Checkpoint.Protos.V1;
using Grpc.Core;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// <c>checkpoint-sidecar drill</c>, run by <c>kubectl exec</c> into the sidecar container: rehearses a
/// preemption flush on the live job without stopping it, through the same socket as <c>prestop</c>,
/// and prints how it went against the budget a real preemption would have had.
/// </summary>
internal static class DrillCommand
{
    public const string Name = "drill";

    private const string Usage = "usage: checkpoint-sidecar drill [--json] [--socket PATH]";

    /// <returns>0 committed within the budget; 1 would not have fit, failed or unreachable; 2 bad usage.</returns>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error)
    {
        var socketPath = PreStopCommand.SocketPathFromEnvironment();
        var json = false;
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == "--socket" && i + 1 < args.Length)
            {
                socketPath = args[++i];
            }
            else if (args[i] == "--json")
            {
                json = true;
            }
            else
            {
                await error.WriteLineAsync($"checkpoint-sidecar drill: unknown argument '{args[i]}'; {Usage}").ConfigureAwait(false);
                return 2;
            }
        }

        try
        {
            using var channel = PreStopCommand.UnixSocketChannel(socketPath);
            var client = new CheckpointService.CheckpointServiceClient(channel);
            var drill = await client.StartDrillAsync(new StartDrillRequest(), deadline: DateTime.UtcNow.AddSeconds(10));
            if (!json)
            {
                await output.WriteLineAsync($"checkpoint-sidecar drill: preemption drill {drill.CheckpointId} started; deadline {drill.Deadline.ToDateTime():O}")
                    .ConfigureAwait(false);
            }

            // The sidecar fails the drill at its deadline by itself; the slack covers a storage call
            // that the deadline abandons and the answer's way back.
            var outcome = await client.WaitForCheckpointAsync(
                new WaitForCheckpointRequest { CheckpointId = drill.CheckpointId }, deadline: drill.Deadline.ToDateTime().AddSeconds(30));
            var endedAt = DateTimeOffset.UtcNow;
            var report = ToReport(drill, outcome, endedAt);
            await output.WriteLineAsync(json ? JsonSerializer.Serialize(report, DrillJsonContext.Default.DrillReport) : report.ToText())
                .ConfigureAwait(false);
            return report.Fits ? 0 : 1;
        }
        catch (RpcException e)
        {
            await error.WriteLineAsync(e.StatusCode switch
            {
                StatusCode.FailedPrecondition or StatusCode.PermissionDenied or StatusCode.ResourceExhausted =>
                    $"checkpoint-sidecar drill: not started: {e.Status.Detail}",
                StatusCode.Unimplemented => "checkpoint-sidecar drill: this sidecar predates drills (0.2.0); upgrade the sidecar image",
                StatusCode.DeadlineExceeded => "checkpoint-sidecar drill: no outcome came back in time; a preemption now would not fit",
                _ => $"checkpoint-sidecar drill: the sidecar at {socketPath} did not answer ({e.StatusCode}: {e.Status.Detail}); is it running and is CHECKPOINT_SOCKET_PATH the same as the sidecar's?",
            }).ConfigureAwait(false);
            return 1;
        }
    }

    internal static DrillReport ToReport(StartDrillResponse drill, CheckpointOutcome outcome, DateTimeOffset endedAt)
    {
        var triggeredAt = drill.TriggeredAt.ToDateTimeOffset();
        var t = outcome.Status == CheckpointStatus.Committed ? outcome.Timings : null;
        IReadOnlyList<(string, TimeSpan)> phases = t is null
            ? []
            : [("notify", t.Notify.ToTimeSpan()), ("dump", t.Dump.ToTimeSpan()), ("copy", t.Copy.ToTimeSpan()),
               ("verify", t.Verify.ToTimeSpan()), ("commit", t.Commit.ToTimeSpan())];
        return DrillReport.From(
            drill.CheckpointId,
            outcome.Status switch
            {
                CheckpointStatus.Committed => "committed",
                CheckpointStatus.Superseded => "superseded",
                _ => "failed",
            },
            outcome.Status == CheckpointStatus.Committed ? outcome.Step : null,
            outcome.Error.Length > 0 ? outcome.Error : null,
            drill.GracePeriod.ToTimeSpan(), drill.SafetyMargin.ToTimeSpan(), triggeredAt, drill.Deadline.ToDateTimeOffset(),
            t?.Total.ToTimeSpan() ?? endedAt - triggeredAt, phases, t?.Bytes);
    }
}
