using System.Text.Json;
using System.Text.RegularExpressions;
using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// The published binary's operator commands (list, verify, prune, --version) against checkpoints a
/// real sidecar committed, with the job found from the sidecar's own environment variables.
/// </summary>
public sealed class OperatorCliTests
{
    [Fact]
    public async Task ListVerifyPrune_OnARealSidecarsCheckpoints_AndTheSidecarStillResumesFromWhatPruneKept()
    {
        using var dirs = new TestDirectories();
        var job = dirs.JobDirectory();
        var environment = SidecarProcess.Environment(dirs);
        await using (var sidecar = await SidecarProcess.StartAsync(dirs))
        {
            var metrics = await sidecar.ScrapeMetricsAsync();
            Assert.Matches(new Regex(@"^checkpoint_build_info\{version=""0\.2\.0"",commit=""[0-9a-f]*""\} 1$", RegexOptions.Multiline), metrics);

            await using var client = await sidecar.ConnectAsync();
            foreach (var step in new[] { 10, 20, 30 })
            {
                Assert.Equal(CheckpointStatus.Committed, (await TrainerFiles.CheckpointAsync(client, step, 0, ("model.bin", 1 << 20), ("state.json", 100))).Status);
            }

            await sidecar.DetachAsync(client);
        }

        var (code, output) = await RunCliAsync(environment, "list", "--json");
        Assert.Equal(0, code);
        using (var list = JsonDocument.Parse(output))
        {
            var checkpoints = list.RootElement.GetProperty("checkpoints").EnumerateArray().ToList();
            Assert.Equal(["step-000000030", "step-000000020", "step-000000010"], checkpoints.Select(c => c.GetProperty("id").GetString()));
            Assert.All(checkpoints, c => Assert.Equal("committed", c.GetProperty("state").GetString()));
            Assert.Equal((1 << 20) + 100, checkpoints[0].GetProperty("bytes").GetInt64());
            Assert.Equal("step-000000030", list.RootElement.GetProperty("resumeWouldPick").GetString());
            Assert.Equal("step-000000030", list.RootElement.GetProperty("latest").GetString());
        }

        (code, output) = await RunCliAsync(environment, "list");
        Assert.Equal(0, code);
        Assert.Matches(new Regex(@"^30\s+step-000000030\s+committed\s+periodic\s+1\s+1\s+1\.0 MiB\s+\S+\s+<- resume, LATEST$", RegexOptions.Multiline), output);

        (code, output) = await RunCliAsync(environment, "verify");
        Assert.True(code == 0, output);
        Assert.StartsWith("ok          step-000000030", output, StringComparison.Ordinal);

        var damaged = Path.Combine(IndependentCheck.ShardDirectory(IndependentCheck.StepDirectory(job, 30), 0), "rank-0", "model.bin");
        FileDamage.FlipBit(damaged, 4096);
        (code, output) = await RunCliAsync(environment, "verify");
        Assert.True(code == 1, output);
        Assert.Contains("FAILED      step-000000030", output, StringComparison.Ordinal);
        Assert.Contains("file 'rank-0/model.bin' hashes to", output, StringComparison.Ordinal);
        Assert.Contains("Resume would pick step-000000020 (it verifies).", output, StringComparison.Ordinal);

        await using (var sidecar = await SidecarProcess.StartAsync(dirs))
        {
            // A live pod of the job: prune runs beside it, as an operator on call would.
            (code, output) = await RunCliAsync(environment, "prune", "--keep", "1");
            Assert.True(code == 0, output);
            Assert.Contains("removed step-000000010", output, StringComparison.Ordinal);
            Assert.Equal(["step-000000020", "step-000000030"], Directory.GetDirectories(job, "step-*").Select(Path.GetFileName).Order(StringComparer.Ordinal));

            (code, _) = await RunCliAsync(environment, "verify", "20");
            Assert.Equal(0, code);

            await using var client = await sidecar.ConnectAsync();
            var latest = await client.GetLatestCheckpointAsync();
            Assert.NotNull(latest);
            Assert.Equal("step-000000020", latest.Id);
            Assert.Equal(20, latest.Step);
        }
    }

    [Fact]
    public async Task VersionAndUsageErrors_OfThePublishedBinary()
    {
        var (code, output) = await RunCliAsync(new Dictionary<string, string>(), "--version");
        Assert.Equal(0, code);
        Assert.Matches(@"^checkpoint-sidecar 0\.2\.0( \(commit [0-9a-f]+\))?$", output.Trim());

        (code, output) = await RunCliAsync(new Dictionary<string, string>(), "list");
        Assert.Equal(2, code);
        Assert.Contains("--storage is not given and CHECKPOINT_STORAGE_DIR is not set", output, StringComparison.Ordinal);

        (code, output) = await RunCliAsync(new Dictionary<string, string>(), "prune", "--keep", "1", "--force");
        Assert.Equal(2, code);
        Assert.Contains("unknown flag '--force' for 'prune'", output, StringComparison.Ordinal);
    }

    /// <returns>The exit code, and standard output and error as lines.</returns>
    private static async Task<(int Code, string Output)> RunCliAsync(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        await using var process = ObservedProcess.Start("checkpoint-sidecar " + args[0], RepoPaths.SidecarBinary, args, environment);
        var code = await process.WaitForExitAsync();
        return (code, process.Output);
    }
}
