using Checkpoint.Sidecar.Storage;

namespace Checkpoint.Sidecar.Tests.Storage;

/// <summary>
/// Where a copy worker goes when it needs a new file: one no other worker is on before one it would
/// share, largest first, so many files stream one per worker and one big file gets every worker.
/// </summary>
public sealed class RangeWorkersClaimTests
{
    private const int Chunk = 4096;

    [Fact]
    public void NextJob_NoWorkerYet_TakesTheFirst()
    {
        var jobs = Jobs(3, chunks: 4);

        Assert.Same(jobs[0], RangeWorkers.NextJob(jobs));
    }

    [Fact]
    public void NextJob_EarlierFilesHaveWorkers_TakesTheFirstFileWithoutOne()
    {
        var jobs = Jobs(4, chunks: 4);
        jobs[0].Owners = 1;
        jobs[1].Owners = 2;

        Assert.Same(jobs[2], RangeWorkers.NextJob(jobs));
    }

    [Fact]
    public void NextJob_EveryFileWithChunksLeftHasAWorker_JoinsTheFirstOfThem()
    {
        var jobs = Jobs(3, chunks: 4);
        jobs[0].NextClaim = 4;
        jobs[0].Owners = 1;
        jobs[1].Owners = 1;
        jobs[2].Owners = 1;

        Assert.Same(jobs[1], RangeWorkers.NextJob(jobs));
    }

    [Fact]
    public void NextJob_SkipsFilesDoneOrFullyClaimed_EvenWithoutAWorker()
    {
        var jobs = Jobs(3, chunks: 2);
        jobs[0].Done = true;
        jobs[1].NextClaim = 2;

        Assert.Same(jobs[2], RangeWorkers.NextJob(jobs));
    }

    [Fact]
    public void NextJob_EveryChunkClaimed_None()
    {
        var jobs = Jobs(2, chunks: 2);
        jobs[0].NextClaim = 2;
        jobs[1].Done = true;

        Assert.Null(RangeWorkers.NextJob(jobs));
    }

    private static List<RangeJob> Jobs(int count, int chunks) =>
        Enumerable.Range(0, count).Select(_ =>
        {
            var job = new IdleJob(chunks * (long)Chunk);
            job.BeginPhase(Chunk);
            return (RangeJob)job;
        }).ToList();

    /// <summary>A job that is only looked at, never run.</summary>
    private sealed class IdleJob(long size) : RangeJob(size)
    {
        public override void Open() => throw new NotSupportedException();

        public override void Transfer(long offset, Span<byte> buffer, int length) => throw new NotSupportedException();

        public override bool Finish() => throw new NotSupportedException();

        public override void Close()
        {
        }
    }
}
