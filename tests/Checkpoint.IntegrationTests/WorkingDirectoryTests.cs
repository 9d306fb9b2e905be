namespace Checkpoint.IntegrationTests;

/// <summary>
/// The sidecar's working directory is whatever the image and pod give it, often "/", which holds the
/// checkpoint share. It must not watch anything beneath it: a recursive inotify watch (the host's default
/// for reloading appsettings.json) walks the whole tree at start, adds a watch for every directory any pod
/// of the job creates, and wakes up on every file written there.
/// </summary>
public sealed class WorkingDirectoryTests
{
    [Fact]
    public async Task Started_HoldsNoInotifyWatch()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();

        Assert.Equal(0, InotifyWatches(sidecar.Process.Pid));
    }

    /// <summary>The inotify watches the process holds, as /proc/PID/fdinfo lists them (one "inotify wd:" line each).</summary>
    private static int InotifyWatches(int pid)
    {
        var watches = 0;
        foreach (var fd in Directory.EnumerateFiles($"/proc/{pid}/fdinfo"))
        {
            try
            {
                watches += File.ReadLines(fd).Count(l => l.StartsWith("inotify wd:", StringComparison.Ordinal));
            }
            catch (IOException)
            {
                // The descriptor was closed between the listing and the read.
            }
        }

        return watches;
    }
}
