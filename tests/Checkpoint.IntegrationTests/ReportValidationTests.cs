using System.Diagnostics;
using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// Trainer reports are untrusted input: every bad file list is refused with INVALID_ARGUMENT naming
/// the file, and nothing is committed.
/// </summary>
public sealed class ReportValidationTests
{
    public static TheoryData<string, string> BadReports => new()
    {
        // case, the path named in the error
        { "absolute", "/etc/passwd" },
        { "dotdot", "rank-0/../../outside.bin" },
        { "symlink-out", "rank-0/link.bin" },
        { "missing", "rank-0/missing.bin" },
        { "duplicate", "rank-0/model.bin" },
        { "fifo", "rank-0/pipe" },
        { "directory", "rank-0" },
    };

    [Theory]
    [MemberData(nameof(BadReports))]
    public async Task ReportDump_BadFile_InvalidArgumentNamingFileAndNothingCommitted(string badCase, string namedPath)
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();
        var dump = await client.BeginCheckpointAsync(5, CheckpointReason.Manual);
        var files = TrainerFiles.Write(dump, 0, ("model.bin", 4096)).ToList();
        var rankDir = Path.Combine(dump.StagingDirectory, "rank-0");
        switch (badCase)
        {
            case "absolute":
            case "missing":
            case "dotdot":
            case "directory":
                files.Add(namedPath);
                break;
            case "symlink-out":
                var outside = Path.Combine(dirs.Root, "outside.bin");
                File.WriteAllText(outside, "secret");
                File.CreateSymbolicLink(Path.Combine(rankDir, "link.bin"), outside);
                files.Add(namedPath);
                break;
            case "duplicate":
                files.Add(namedPath);
                break;
            case "fifo":
                using (var mkfifo = Process.Start("mkfifo", Path.Combine(rankDir, "pipe")))
                {
                    await mkfifo.WaitForExitAsync();
                    Assert.Equal(0, mkfifo.ExitCode);
                }

                files.Add(namedPath);
                break;
        }

        var error = await Assert.ThrowsAsync<CheckpointException>(() => client.CompleteDumpAsync(dump, 5, files, null));
        Assert.Equal(CheckpointErrorCode.InvalidArgument, error.StatusCode);
        Assert.Contains($"'{namedPath}'", error.Message, StringComparison.Ordinal);

        Assert.Null(IndependentCheck.Latest(dirs.JobDirectory()));
        Assert.Null(await client.GetLatestCheckpointAsync());
        Assert.Empty(Directory.Exists(dirs.JobDirectory()) ? Directory.GetDirectories(dirs.JobDirectory()) : []);
    }

    /// <remarks>The status message travels in an HTTP/2 trailer, which clients cap; a 5000-byte echo broke one.</remarks>
    [Fact]
    public async Task ReportDump_FiveThousandBytePath_ErrorEchoesItCapped()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();
        var dump = await client.BeginCheckpointAsync(5, CheckpointReason.Manual);
        var longPath = "rank-0/" + string.Join('/', Enumerable.Repeat(new string('a', 99), 50));
        Assert.True(longPath.Length > 5000);

        var error = await Assert.ThrowsAsync<CheckpointException>(() => client.CompleteDumpAsync(dump, 5, [longPath], null));

        Assert.Equal(CheckpointErrorCode.InvalidArgument, error.StatusCode);
        Assert.Contains($"'{longPath[..200]}", error.Message, StringComparison.Ordinal);
        Assert.Contains("…'", error.Message, StringComparison.Ordinal);
        Assert.True(error.Message.Length < 600, $"{error.Message.Length} characters: {error.Message}");
    }

    [Fact]
    public async Task ReportDump_UnknownCheckpoint_NotFound()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();
        var dump = await client.BeginCheckpointAsync(5, CheckpointReason.Manual);
        var files = TrainerFiles.Write(dump, 0, ("model.bin", 16));

        var error = await Assert.ThrowsAsync<CheckpointException>(() =>
            client.CompleteDumpAsync(dump with { CheckpointId = "no-such-checkpoint" }, 5, files, null));
        Assert.Equal(CheckpointErrorCode.NotFound, error.StatusCode);
        Assert.Contains("no-such-checkpoint", error.Message, StringComparison.Ordinal);
    }
}
