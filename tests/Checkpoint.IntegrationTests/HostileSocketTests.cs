using Checkpoint.IntegrationTests.Infrastructure;
using Grpc.Core;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// Any process that can reach the socket is a trainer of the pod, but an untrusted one: what it sends
/// is refused plainly, without costing the sidecar its log, its memory or its real trainers.
/// </summary>
public sealed class HostileSocketTests
{
    [Fact]
    public async Task RequestIsNotProtobuf_InvalidArgument_NoStackTraceLogged()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);

        // Field 1 announced as length-delimited with a length far past the end of the message.
        var error = await RawGrpc.FailingUnaryCallAsync(sidecar.SocketPath, "ReportDump", [0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]);

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Equal("the ReportDump request is not a valid checkpoint.v1 protobuf message", error.Status.Detail);
        // The sidecar still answers; the log is written in order, so once the attachment is logged any
        // line about the bad request would be there too.
        await using var client = await sidecar.ConnectAsync();
        await sidecar.Process.WaitForLineAsync("rank 0, integration test rank 0\\) attached");
        Assert.DoesNotContain(sidecar.Process.Lines, line => line.Contains("Exception", StringComparison.Ordinal) || line.Contains("   at ", StringComparison.Ordinal));
    }
}
