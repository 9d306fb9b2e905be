using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Resume;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Tests.Storage;
using Checkpoint.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Microsoft.Extensions.Options;
using Prometheus;

// "Resume" is a reserved word in Visual Basic (CA1716), hence not the folder name.
namespace Checkpoint.Sidecar.Tests.Resuming;

public sealed class ResumeLocatorTests : IDisposable
{
    private const string Id = "20260101T000000000Z-periodic";
    private static readonly IReadOnlySet<string> NoneReported = new HashSet<string>(StringComparer.Ordinal);
    private static readonly TimeSpan NeverBlocks = TimeSpan.FromSeconds(30);

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
        _locator = new ResumeLocator(_store, options, new CheckpointMetrics(_registry), TimeProvider.System, NullLogger<ResumeLocator>.Instance);
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
        FileDamage.FlipBit(path, 12345);

        // Eight ranks ask at the same moment: the damaged checkpoint is hashed, and counted, once.
        var answers = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => _locator.FindAsync(CancellationToken.None)));

        Assert.All(answers, Assert.Null);
        Assert.Equal(1, await ResumeVerifyFailuresAsync());

        // A later question is a fresh lookup: nothing is cached across time.
        Assert.Null(await _locator.FindAsync(CancellationToken.None));
        Assert.Equal(2, await ResumeVerifyFailuresAsync());
    }

    [Fact]
    public async Task FindAsync_LatestIsFifo_AnswersFromTheCheckpoints()
    {
        await CommitAsync(size: 1 << 10);
        var latest = Path.Combine(_store.Layout.JobDirectory, "LATEST");
        File.Delete(latest);
        Posix.MakeFifo(latest);

        var found = await _locator.FindAsync(CancellationToken.None).WaitAsync(NeverBlocks);

        Assert.Equal(Id, found?.Id);
    }

    [Fact]
    public async Task FindAsync_LookupStalls_ItsCallersFailAndTheNextQuestionStartsAfresh()
    {
        var time = new FakeTimeProvider();
        var checkpoint = SomeCheckpoint();
        using var inside = new SemaphoreSlim(0);
        using var stuck = new ManualResetEventSlim();
        var lookups = 0;
        var locator = new ResumeLocator((_, _) =>
        {
            if (Interlocked.Increment(ref lookups) == 1)
            {
                inside.Release();
                // As a read from a stalled NFS server: no progress, deaf to cancellation.
                stuck.Wait(CancellationToken.None);
            }

            return checkpoint;
        }, time, NullLogger.Instance);

        try
        {
            var first = locator.FindAsync(CancellationToken.None);
            var second = locator.FindAsync(CancellationToken.None);
            Assert.True(await inside.WaitAsync(NeverBlocks));
            time.Advance(ResumeLocator.StallTimeout);

            await Assert.ThrowsAsync<ResumeLookupStalledException>(() => first.WaitAsync(NeverBlocks));
            await Assert.ThrowsAsync<ResumeLookupStalledException>(() => second.WaitAsync(NeverBlocks));
            Assert.Same(checkpoint, await locator.FindAsync(CancellationToken.None).WaitAsync(NeverBlocks));
            Assert.Equal(2, lookups);
        }
        finally
        {
            stuck.Set();
        }
    }

    [Fact]
    public async Task FindAsync_SlowLookupMakingProgress_IsNotCutShort()
    {
        var time = new FakeTimeProvider();
        var checkpoint = SomeCheckpoint();
        using var movedOn = new SemaphoreSlim(0);
        using var goOn = new SemaphoreSlim(0);
        var locator = new ResumeLocator((onProgress, cancellationToken) =>
        {
            // Hashing a large checkpoint: minutes in all, but a buffer read every moment.
            for (var step = 0; step < 4; step++)
            {
                onProgress();
                movedOn.Release();
                goOn.Wait(cancellationToken);
            }

            return checkpoint;
        }, time, NullLogger.Instance);

        var answer = locator.FindAsync(CancellationToken.None);
        for (var step = 0; step < 4; step++)
        {
            Assert.True(await movedOn.WaitAsync(NeverBlocks));
            time.Advance(ResumeLocator.StallTimeout * 0.75);
            goOn.Release();
        }

        Assert.Same(checkpoint, await answer.WaitAsync(NeverBlocks));
    }

    private static CommittedCheckpoint SomeCheckpoint() => CommittedCheckpoint.FromFormat1("/storage/ns/job/" + Id, new CheckpointManifest
    {
        FormatVersion = CheckpointManifest.CurrentFormatVersion,
        Id = Id,
        Step = 5,
        Created = DateTimeOffset.UnixEpoch,
        Reason = "periodic",
        Files = [],
        Ranks = [],
        Timings = new ManifestTimings(30, 0, 0, 0, 0),
    });

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
