using Checkpoint.IntegrationTests.Infrastructure;

namespace Checkpoint.IntegrationTests;

/// <summary>A bad setting stops the real sidecar at start, with exit code 2 and a message naming it.</summary>
public sealed class ConfigurationTests
{
    public static TheoryData<string, string> BadSettings => new()
    {
        { "CHECKPOINT_STAGING_DIR", "/nonexistent/staging" },
        { "CHECKPOINT_STORAGE_DIR", "" },
        { "CHECKPOINT_METRICS_PORT", "70000" },
        { "CHECKPOINT_KEEP", "0" },
        { "CHECKPOINT_KEEP", "three" },
        { "CHECKPOINT_GRACE_PERIOD_SECONDS", "-5" },
        { "CHECKPOINT_SOCKET_PATH", "relative/sidecar.sock" },
        { "CHECKPOINT_JOB_NAME", "a/b" },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public async Task Start_BadSetting_ExitsWithCode2NamingTheSetting(string setting, string value)
    {
        using var dirs = new TestDirectories();
        var environment = SidecarProcess.Environment(dirs);
        environment[setting] = value;
        await using var sidecar = ObservedProcess.Start("sidecar", RepoPaths.SidecarBinary, [], environment);

        Assert.Equal(2, await sidecar.WaitForExitAsync());
        Assert.Contains(setting, sidecar.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("Checkpoint sidecar ready", sidecar.Output, StringComparison.Ordinal);
        Assert.False(File.Exists(dirs.SocketPath));
    }

    [Fact]
    public async Task Start_JobDirectoryPathIsAFile_ExitsWithCode2NamingThePath()
    {
        using var dirs = new TestDirectories();
        var job = dirs.JobDirectory();
        Directory.CreateDirectory(Path.GetDirectoryName(job)!);
        await File.WriteAllTextAsync(job, "left by someone else");
        await using var sidecar = ObservedProcess.Start("sidecar", RepoPaths.SidecarBinary, [], SidecarProcess.Environment(dirs));

        Assert.Equal(2, await sidecar.WaitForExitAsync());
        Assert.Contains($"'{job}' exists and is not a directory", sidecar.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", sidecar.Output, StringComparison.Ordinal);
        Assert.False(File.Exists(dirs.SocketPath));
    }

    [Fact]
    public async Task Start_StaleSocketFile_IsReplaced()
    {
        using var dirs = new TestDirectories();
        await File.WriteAllTextAsync(dirs.SocketPath, "left by a killed sidecar");
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();

        Assert.Null(await client.GetLatestCheckpointAsync());
        Assert.Equal(
            UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite,
            File.GetUnixFileMode(dirs.SocketPath));
    }
}
