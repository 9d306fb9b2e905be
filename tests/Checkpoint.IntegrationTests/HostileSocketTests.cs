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

    /// <remarks>
    /// bind() creates the socket with whatever mode the umask leaves; the file must not be reachable
    /// like that even for a moment. inotify reports every change of mode (IN_ATTRIB) in order, so a
    /// socket that appears and is never changed afterwards had its final mode from the start.
    /// </remarks>
    [Fact]
    public async Task Start_SocketAppears_AlreadyMode0660AndNeverChanged()
    {
        using var dirs = new TestDirectories();
        var socketName = Path.GetFileName(dirs.SocketPath);
        var events = new List<string>();
        var markerSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var watcher = new FileSystemWatcher(dirs.SocketDirectory)
        {
            NotifyFilter = NotifyFilters.FileName | NotifyFilters.DirectoryName | NotifyFilters.Attributes | NotifyFilters.Security,
        };
        FileSystemEventHandler record = (_, e) =>
        {
            lock (events)
            {
                events.Add($"{e.ChangeType} {e.Name}");
            }

            if (e.Name == "marker")
            {
                markerSeen.TrySetResult();
            }
        };
        watcher.Created += record;
        watcher.Changed += record;
        watcher.Renamed += (_, e) => record(watcher, new FileSystemEventArgs(WatcherChangeTypes.Created, dirs.SocketDirectory, e.Name));
        watcher.EnableRaisingEvents = true;

        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        // Events arrive in order: once the marker's is here, every event of the start is.
        await File.WriteAllTextAsync(Path.Combine(dirs.SocketDirectory, "marker"), "");
        await markerSeen.Task.WaitAsync(ObservedProcess.DefaultTimeout);

        List<string> socketEvents;
        lock (events)
        {
            socketEvents = events.Where(e => e.EndsWith(" " + socketName, StringComparison.Ordinal)).ToList();
        }

        Assert.Equal([$"Created {socketName}"], socketEvents);
        Assert.Equal(
            UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite,
            File.GetUnixFileMode(dirs.SocketPath));
        await using var client = await sidecar.ConnectAsync();
        Assert.Equal(["marker", socketName], Directory.GetFileSystemEntries(dirs.SocketDirectory).Select(p => Path.GetFileName(p)).Order());
    }
}
