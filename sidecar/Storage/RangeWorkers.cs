using System.IO.Hashing;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// One file's work for <see cref="RangeWorkers"/>: fixed-size chunks that workers move at once, in
/// any order, and that are hashed in file order, so the hash is the XXH128 of the whole file that
/// <c>xxhsum -H2</c> prints. A job may have a second phase (the read-back after the copy).
/// </summary>
internal abstract class RangeJob
{
    internal readonly object Lock = new();

    /// <summary>Chunks of the current phase: at least one, so an empty file is also opened and finished.</summary>
    internal int ChunkCount;
    internal int NextClaim;
    internal int NextHash;
    /// <summary>Workers whose current job this is (see <c>RangeWorkers.Claim</c>).</summary>
    internal int Owners;
    internal bool Done;
    internal bool Opened;
    internal XxHash128 Hash = new();

    protected RangeJob(long size) => Size = size;

    public long Size { get; }

    /// <summary>Opens what the current phase reads and writes; called once per phase, by the first worker to claim a chunk.</summary>
    public abstract void Open();

    /// <summary>Moves one chunk (read it; for a copy also write it) into <paramref name="buffer"/>, which then holds the chunk's bytes.</summary>
    public abstract void Transfer(long offset, Span<byte> buffer, int length);

    /// <summary>Called once, by the worker that hashed the last chunk, when every chunk of the phase is done.</summary>
    /// <returns>True when another phase begins (its chunks are then claimed like the first's).</returns>
    public abstract bool Finish();

    /// <summary>Releases what is open; called for every job when the run ends, whether it succeeded or not.</summary>
    public abstract void Close();

    internal void BeginPhase(int chunkSize)
    {
        ChunkCount = Size == 0 ? 1 : (int)((Size + chunkSize - 1) / chunkSize);
        NextClaim = 0;
        NextHash = 0;
        Opened = false;
        Hash = new XxHash128();
    }
}

/// <summary>
/// The copy workers of one flush (or one verification): dedicated threads, each with one aligned
/// chunk buffer allocated when it starts and freed when it ends, so a flush holds at most
/// workers x chunk bytes and nothing after. A worker keeps to its file while that file has chunks
/// left; otherwise it takes the first file (largest first) that no other worker is on, and only when
/// there is none joins the first that still has chunks. With as many files as workers each worker
/// streams its own file, like independent <c>dd</c>s, and none waits for another's chunk to hash its
/// own; a big file, and the last files of a flush, get every worker at once, writing at their offsets.
/// Chunks are hashed in file order by whichever worker holds the next one; claims run at most one
/// chunk per worker ahead, so the window is bounded.
/// </summary>
internal sealed class RangeWorkers
{
    /// <summary>All workers' buffers together stay under this, however many workers are asked for.</summary>
    public const int MemoryBudget = 32 << 20;

    private readonly object _gate = new();
    private readonly IReadOnlyList<RangeJob> _jobs;
    private readonly CopyPace _pace;
    private readonly CancellationToken _cancellationToken;
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Exception? _failure;
    private int _running;

    /// <param name="jobs">In the order workers take them up: largest first.</param>
    public RangeWorkers(IReadOnlyList<RangeJob> jobs, int workers, int bufferSize, CopyPace pace, CancellationToken cancellationToken)
    {
        _jobs = jobs;
        _pace = pace;
        _cancellationToken = cancellationToken;
        ChunkSize = ChunkSizeFor(bufferSize, Math.Max(1, workers));
        foreach (var job in jobs)
        {
            job.BeginPhase(ChunkSize);
        }

        // No more threads (and buffers) than there are chunks: hashing one small file starts one.
        Workers = (int)Math.Clamp(jobs.Sum(j => (long)j.ChunkCount), 1, Math.Max(1, workers));
    }

    public int Workers { get; }

    public int ChunkSize { get; }

    /// <summary>The configured buffer size rounded up to the O_DIRECT alignment, made smaller when the workers' buffers together would pass <see cref="MemoryBudget"/>.</summary>
    public static int ChunkSizeFor(int bufferSize, int workers)
    {
        var chunk = (int)AlignedBuffer.RoundUp(Math.Max(bufferSize, AlignedBuffer.Alignment));
        var budget = (int)(MemoryBudget / workers / AlignedBuffer.Alignment * AlignedBuffer.Alignment);
        return Math.Max(AlignedBuffer.Alignment, Math.Min(chunk, budget));
    }

    /// <summary>Runs every job to its end on dedicated threads; the first failure (or the cancellation) stops all workers.</summary>
    public Task RunAsync()
    {
        _running = Workers;
        var registration = _cancellationToken.Register(() => Fail(new OperationCanceledException(_cancellationToken)));
        _completion.Task.ContinueWith(_ => registration.Dispose(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        for (var i = 0; i < Workers; i++)
        {
            // Dedicated threads, not the thread pool: the pace may set a worker's CPU and I/O priority,
            // which must die with the copy, and a blocked write must not starve the pool.
            new Thread(Work) { IsBackground = true, Name = $"checkpoint-copy-{i}" }.Start();
        }

        return _completion.Task;
    }

    /// <summary><see cref="RunAsync"/> for a synchronous caller; the work still runs on the dedicated threads.</summary>
    public void Run() => RunAsync().GetAwaiter().GetResult();

    private void Work()
    {
        AlignedBuffer? buffer = null;
        try
        {
            buffer = new AlignedBuffer(ChunkSize);
            RangeJob? current = null;
            while (Claim(ref current) is var (job, index) && job is not null)
            {
                if (!RunChunk(job, index, buffer))
                {
                    break;
                }
            }
        }
        catch (Exception e)
        {
            Fail(e);
        }
        finally
        {
            buffer?.Dispose();
            if (Interlocked.Decrement(ref _running) == 0)
            {
                Complete();
            }
        }
    }

    /// <param name="current">The worker's job so far; updated to the job of the chunk claimed (null when none).</param>
    private (RangeJob? Job, int Index) Claim(ref RangeJob? current)
    {
        lock (_gate)
        {
            if (_failure is null && current is { Done: false } own && own.NextClaim < own.ChunkCount)
            {
                return (own, own.NextClaim++);
            }

            if (current is not null)
            {
                current.Owners--;
                current = null;
            }

            while (true)
            {
                if (_failure is not null)
                {
                    return (null, 0);
                }

                var next = NextJob(_jobs);
                if (next is not null)
                {
                    next.Owners++;
                    current = next;
                    return (next, next.NextClaim++);
                }

                if (_jobs.All(j => j.Done))
                {
                    return (null, 0);
                }

                // Every chunk is claimed, but a job being finished may begin its read-back.
                Monitor.Wait(_gate);
            }
        }
    }

    /// <summary>
    /// Where a worker without a file of its own (or whose file has no chunk left) goes next: the first job
    /// (largest first) with a chunk left and no worker on it, else the first with a chunk left; null when
    /// every chunk is claimed.
    /// </summary>
    internal static RangeJob? NextJob(IReadOnlyList<RangeJob> jobs)
    {
        RangeJob? joined = null;
        foreach (var job in jobs)
        {
            if (job.Done || job.NextClaim >= job.ChunkCount)
            {
                continue;
            }

            if (job.Owners == 0)
            {
                return job;
            }

            joined ??= job;
        }

        return joined;
    }

    /// <returns>False when the run was stopped while this worker waited.</returns>
    private bool RunChunk(RangeJob job, int index, AlignedBuffer buffer)
    {
        lock (job.Lock)
        {
            // After a failure (perhaps this job's own open) nothing more is opened.
            if (Volatile.Read(ref _failure) is not null)
            {
                return false;
            }

            if (!job.Opened)
            {
                job.Open();
                job.Opened = true;
            }
        }

        var offset = (long)index * ChunkSize;
        var length = (int)Math.Min(ChunkSize, job.Size - offset);
        _pace.BeforeChunk(length, _cancellationToken);
        _cancellationToken.ThrowIfCancellationRequested();
        var chunk = buffer.Span;
        job.Transfer(offset, chunk, length);

        lock (job.Lock)
        {
            while (job.NextHash != index)
            {
                if (Volatile.Read(ref _failure) is not null)
                {
                    return false;
                }

                Monitor.Wait(job.Lock);
            }
        }

        // Only the holder of the next chunk appends, so the hash needs no lock.
        job.Hash.Append(chunk[..length]);
        bool last;
        lock (job.Lock)
        {
            job.NextHash++;
            last = job.NextHash == job.ChunkCount;
            Monitor.PulseAll(job.Lock);
        }

        if (last)
        {
            var again = job.Finish();
            lock (_gate)
            {
                if (again)
                {
                    job.BeginPhase(ChunkSize);
                }
                else
                {
                    job.Done = true;
                }

                Monitor.PulseAll(_gate);
            }
        }

        return true;
    }

    private void Fail(Exception e)
    {
        lock (_gate)
        {
            _failure ??= e;
            Monitor.PulseAll(_gate);
        }

        foreach (var job in _jobs)
        {
            lock (job.Lock)
            {
                Monitor.PulseAll(job.Lock);
            }
        }
    }

    private void Complete()
    {
        Exception? closing = null;
        foreach (var job in _jobs)
        {
            try
            {
                job.Close();
            }
            catch (Exception e) when (e is IOException)
            {
                closing ??= e;
            }
        }

        var failure = _failure ?? closing;
        if (failure is OperationCanceledException)
        {
            _completion.SetCanceled(_cancellationToken);
        }
        else if (failure is not null)
        {
            _completion.SetException(failure);
        }
        else
        {
            _completion.SetResult();
        }
    }
}
