using Checkpoint.IntegrationTests.Infrastructure;

namespace Checkpoint.IntegrationTests;

/// <summary>The published sidecar's own memory once it idles (README, "Memory footprint").</summary>
public sealed class MemoryTests
{
    /// <remarks>
    /// Anonymous memory was 17.8 MiB here: start-up's garbage never collected (a gen0 budget of up to
    /// 128 MB) and 5.7 MB of type descriptors rebuilt at start. With the trim after start-up and the
    /// descriptors kept as pages of the binary it is about 5 MiB; either one alone leaves more than 10.
    /// </remarks>
    [Fact]
    public async Task AfterStartAndOneClient_AnonymousMemoryIsHandedBack()
    {
        const double AllowedAnonymousMiB = 9;
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        var client = await sidecar.ConnectAsync();
        await client.GetStatusAsync();
        await sidecar.DetachAsync(client);

        // The trim runs on the thread pool once the server listens: wait for its effect, bounded.
        var pid = sidecar.Process.Pid;
        var deadline = DateTime.UtcNow + ObservedProcess.DefaultTimeout;
        var memory = ProcessMemory.Of(pid);
        while (memory.AnonymousMiB > AllowedAnonymousMiB && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
            memory = ProcessMemory.Of(pid);
        }

        Assert.True(memory.AnonymousMiB <= AllowedAnonymousMiB, $"idle sidecar: {memory}");
    }
}
