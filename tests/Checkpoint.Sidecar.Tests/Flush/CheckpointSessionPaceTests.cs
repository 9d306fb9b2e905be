using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Checkpoint.Sidecar.Tests.Flush;

/// <summary>The coordinator raises a kept upload while the pipeline may be just about to set its pace: neither order loses the raise.</summary>
public sealed class CheckpointSessionPaceTests
{
    [Fact]
    public void RaiseToFullSpeed_AfterThePaceIsSet_RaisesIt()
    {
        var session = Periodic();
        var pace = session.UsePace(BackgroundPace());

        Assert.True(session.RaiseToFullSpeed());

        Assert.False(pace.IsBackground);
        Assert.True(session.CopiedInBackground);
    }

    [Fact]
    public void RaiseToFullSpeed_BeforeThePaceIsSet_ThePaceStartsRaised()
    {
        var session = Periodic();

        Assert.False(session.RaiseToFullSpeed());
        var pace = session.UsePace(BackgroundPace());

        Assert.False(pace.IsBackground);
    }

    [Fact]
    public void CopiedInBackground_FullSpeedPace_IsFalse()
    {
        var session = Periodic();
        session.UsePace(CopyPace.FullSpeed());

        Assert.False(session.CopiedInBackground);
        Assert.False(session.RaiseToFullSpeed());
    }

    private static CheckpointSession Periodic() => new(
        "c1", CheckpointReason.Periodic, staging: null, "/nowhere", DateTimeOffset.UnixEpoch, deadline: null,
        new Dictionary<string, int>(), new JobWorld(1, ""));

    private static CopyPace BackgroundPace() =>
        CopyPace.Background(new BackgroundPace(10, IoPriorityClass.Idle, 0), new FakeTimeProvider(), NullLogger.Instance, "c1");
}
