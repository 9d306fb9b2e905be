using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Resume;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Prometheus;

// "Resume" is a reserved word in Visual Basic (CA1716), hence not the folder name.
namespace Checkpoint.Sidecar.Tests.Resuming;

public sealed class ResumeLocatorTests : IDisposable
{
    private const string Id = "20260101T000000000Z-periodic";
    private static readonly IReadOnlySet<string> NoneReported = new HashSet<string>(StringComparer.Ordinal);

    private readonly TempDirectory _temp = new();
    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();
    private readonly CheckpointStore _store;
    private readonly ResumeLocator _locator;

    public ResumeLocatorTests()
    {
        var options = Options.Create(new SidecarOptions
        {
            StagingDir = _temp.CreateDirectory("staging"),
            StorageDir = _temp.CreateDirectory("storage"),
            VerifyOnResume = true,
        });
        _store = new CheckpointStore(new CheckpointLayout(options.Value.StorageDir, "ns", "job"), NullLogger<CheckpointStore>.Instance);
        _locator = new ResumeLocator(_store, options, new CheckpointMetrics(_registry));
    }

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task FindAsync_ValidCheckpoint_ReturnsIt()
    {
        await CommitAsync(size: 1 << 20);

        var found = await _locator.FindAsync(CancellationToken.None);

        Assert.Equal(Id, found?.Id);
    }

    [Fact]
    public async Task FindAsync_RanksAskingTogether_ShareOneLookup()
    {
        var path = await CommitAsync(size: 48 << 20);
        TempDirectory.FlipBit(path, 12345);

        // Eight ranks ask at the same moment: the damaged checkpoint is hashed, and counted, once.
        var answers = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => _locator.FindAsync(CancellationToken.None)));

        Assert.All(answers, Assert.Null);
        Assert.Equal(1, await ResumeVerifyFailuresAsync());

        // A later question is a fresh lookup: nothing is cached across time.
        Assert.Null(await _locator.FindAsync(CancellationToken.None));
        Assert.Equal(2, await ResumeVerifyFailuresAsync());
    }

    private async Task<double> ResumeVerifyFailuresAsync() =>
        (await MetricsText.CollectAsync(_registry))
            .Single(s => s.Name == "checkpoint_verify_failures_total" && s.Labels["stage"] == "resume").Value;

    /// <returns>The committed file's path.</returns>
    private async Task<string> CommitAsync(int size)
    {
        var staging = _temp.CreateStaging(Id);
        TempDirectory.WriteFile(staging.Path, "rank-0/model.bin", TempDirectory.RandomBytes(size, seed: 7));
        var staged = StagingValidator.Validate(staging, ["rank-0/model.bin"], NoneReported);
        var partial = _store.CreatePartialDirectory(Id);
        var copy = await new CheckpointCopier(2, 1 << 20, TimeProvider.System).CopyAndVerifyAsync(staged, partial, null, CancellationToken.None);
        var directory = _store.Commit(new CheckpointManifest
        {
            FormatVersion = CheckpointManifest.CurrentFormatVersion,
            Id = Id,
            Step = 5,
            Created = DateTimeOffset.UnixEpoch,
            Reason = "periodic",
            Files = copy.Files,
            Ranks = [new ManifestRank(0, 5, new Dictionary<string, string>())],
            Timings = new ManifestTimings(30, 0, 0, 0, 0),
        });
        return Path.Combine(directory, "rank-0", "model.bin");
    }
}
