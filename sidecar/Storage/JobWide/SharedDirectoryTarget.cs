using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Storage.JobWide;

/// <summary>
/// Job-wide checkpoints in the job's directory on shared storage (NFS): storage is the coordinator,
/// there is no protocol between sidecars. Only what holds on NFS with close-to-open consistency is
/// relied on: a file another pod wrote is re-opened and re-read, never trusted from a cached stat;
/// create-if-absent is a hard link (atomic on NFS, unlike a rename, which replaces); every rename and
/// create is followed by an fsync of its directory.
/// </summary>
/// <remarks>
/// Each flush writes into a directory of its own (<c>&lt;pod&gt;_&lt;attempt&gt;</c>) that nothing else
/// ever writes: an earlier attempt's shard, sealed at the same step, stays whole whatever later
/// attempts do, and no name of one pod can collide with another's.
/// </remarks>
internal sealed class SharedDirectoryTarget(
    CheckpointLayout layout, CheckpointCopier copier, string podName, ILogger<SharedDirectoryTarget> logger)
    : ICheckpointTarget
{
    private readonly string _pod = ShardName.SafePod(podName);

    public JobManifest? FindCommitted(long step)
    {
        try
        {
            return ReadJobManifest(step);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidDataException)
        {
            // Unreadable is not committed for writing purposes: the flush writes a fresh shard and tries to publish.
            JobWideLog.CommittedUnreadable(logger, CheckpointLayout.StepName(step), StorageErrors.Describe(e));
            return null;
        }
    }

    public async Task<WrittenShard> WriteAsync(ShardRequest request, Action<long>? onBytes, CancellationToken cancellationToken)
    {
        var name = ShardName.Create(request.World.Id, _pod, NewAttempt(), request.Ranks.Select(r => r.Rank));
        var stepDirectory = layout.StepDirectory(request.Step);
        var dataDirectory = Path.Combine(stepDirectory, name.DataDirectory);
        var doing = $"creating the checkpoint directory {UserText.Quote(dataDirectory)}";
        try
        {
            EnsureDirectory(layout.JobDirectory, Path.GetDirectoryName(layout.JobDirectory)!);
            EnsureDirectory(stepDirectory, layout.JobDirectory);
            EnsureDirectory(layout.ShardsDirectory(request.Step), stepDirectory);
            // A fresh attempt name: the directory cannot exist unless the random part repeated.
            Directory.CreateDirectory(dataDirectory);
            NativeFile.FsyncDirectory(stepDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StorageErrors.Failed(doing, e);
        }

        var copy = await copier.CopyAndVerifyAsync(request.Files, dataDirectory, request.Copy, onBytes, cancellationToken).ConfigureAwait(false);
        NativeFile.FsyncDirectory(dataDirectory);
        return new WrittenShard(name, request, copy.Files, copy.LastCopied);
    }

    public SealedShard Seal(WrittenShard written, ManifestTimings timings, DateTimeOffset now)
    {
        var request = written.Request;
        var manifest = new ShardManifest
        {
            FormatVersion = JobManifest.CurrentFormatVersion,
            Shard = Path.GetFileNameWithoutExtension(written.Name.FileName),
            Pod = written.Name.Pod,
            WorldId = request.World.Id,
            WorldSize = request.World.Size,
            Step = request.Step,
            Reason = request.Reason,
            Sealed = now,
            Directory = written.Name.DataDirectory,
            Files = written.Files,
            Ranks = request.Ranks,
            Timings = timings,
        };
        var shards = layout.ShardsDirectory(request.Step);
        var path = Path.Combine(shards, written.Name.FileName);
        try
        {
            WriteAtomically(path, manifest.ToUtf8Json(), Path.Combine(shards, $".{written.Name.FileName}.tmp"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StorageErrors.Failed($"sealing shard {UserText.Quote(written.Name.FileName)}", e);
        }

        return new SealedShard(written.Name, manifest);
    }

    public PublishResult TryPublish(SealedShard shard, DateTimeOffset now, bool mayWrite = true)
    {
        var step = shard.Manifest.Step;
        var world = new JobWorld(shard.Manifest.WorldSize, shard.Manifest.WorldId);
        if (FindCommitted(step) is { } already)
        {
            return Committed(already, shard, publishedHere: false);
        }

        // One listing tells whether the world is covered: world and ranks are in the shard names.
        var chosen = ChooseShards(step, world, shard.Name, out var missing);
        if (missing.Count > 0)
        {
            return new PublishResult.Waiting(missing);
        }

        if (!mayWrite)
        {
            return new PublishResult.Waiting([]);
        }

        var shards = new List<ShardManifest>();
        foreach (var name in chosen)
        {
            if (name == shard.Name)
            {
                shards.Add(shard.Manifest);
                continue;
            }

            var other = ReadShard(step, name, world);
            if (other is null)
            {
                // A shard whose manifest does not hold what its name says is not counted: its ranks are missing.
                return new PublishResult.Waiting(name.Ranks);
            }

            shards.Add(other);
        }

        var manifest = new JobManifest
        {
            FormatVersion = JobManifest.CurrentFormatVersion,
            Id = CheckpointLayout.StepName(step),
            Step = step,
            WorldSize = world.Size,
            WorldId = world.Id,
            Reason = shard.Manifest.Reason,
            Created = now,
            PublishedBy = _pod,
            Shards = shards.OrderBy(s => s.Ranks.Min(r => r.Rank)).ToList(),
        };
        if (Publish(manifest, shard.Name))
        {
            MoveLatestForward(step);
            return Committed(manifest, shard, publishedHere: true);
        }

        // Another pod's manifest is there, but a client cache (NFS, or FUSE with a negative entry
        // cache) may not show it yet: look again at the next poll rather than trust this view.
        return FindCommitted(step) is { } theirs ? Committed(theirs, shard, publishedHere: false) : new PublishResult.Waiting([]);
    }

    public void Discard(ShardName shard, long step)
    {
        var data = Path.Combine(layout.StepDirectory(step), shard.DataDirectory);
        try
        {
            NativeFile.RemoveTree(Path.Combine(layout.ShardsDirectory(step), shard.FileName));
            NativeFile.RemoveTree(data);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            StorageLog.DiscardFailed(logger, data, StorageErrors.Reason(e));
        }
    }

    public IReadOnlyList<string> ApplyRetention(int keep, long committedStep)
    {
        var removed = new List<string>();
        foreach (var name in PlanRetention(keep, committedStep))
        {
            var path = Path.Combine(layout.JobDirectory, name);
            var deleting = path + CheckpointLayout.DeletingSuffix;
            try
            {
                // Renamed first, so a half-deleted step is never taken for a checkpoint. Another pod may
                // be retiring it at the same moment: whoever renames first removes it.
                Directory.Move(path, deleting);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }

            removed.Add(name);
            try
            {
                NativeFile.RemoveTree(deleting);
                StorageLog.Retired(logger, name);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                StorageLog.SweepFailed(logger, deleting, StorageErrors.Reason(e));
            }
        }

        NativeFile.FsyncDirectory(layout.JobDirectory);
        return removed;
    }

    /// <summary>
    /// What <see cref="ApplyRetention"/> would remove, names in the job directory: what the operator's
    /// <c>prune --dry-run</c> shows, decided by the same rules.
    /// </summary>
    public IReadOnlyList<string> PlanRetention(int keep, long committedStep)
    {
        var steps = layout.StepCandidates();
        // Committed as resume would see it (a real directory whose job manifest is one of this step),
        // not merely "has a manifest.json": storage content is untrusted, and a forged or symlinked
        // step must not count as the newest commit and push real ones out.
        var committed = steps.Where(s => s.Step == committedStep || IsCommitted(s.Name, s.Step)).ToList();
        var kept = committed.Take(keep).Select(c => c.Step).Append(committedStep).ToHashSet();
        var retired = new List<string>();
        foreach (var (name, step) in steps)
        {
            // Committed steps beyond the newest `keep`, never the one just committed; uncommitted steps
            // older than the one just committed (no pod writes a step older than one every rank has
            // sealed past). Newer uncommitted steps are being written by someone: never touched.
            var retire = committed.Any(c => c.Step == step) ? !kept.Contains(step) : step < committedStep;
            if (retire)
            {
                retired.Add(name);
            }
        }

        // Checkpoints of format 1 predate every step: they go once `keep` steps are committed.
        if (committed.Count >= keep)
        {
            retired.AddRange(layout.CommittedCandidates());
        }

        return retired;
    }

    /// <summary>A step directory (not a symlink) whose job manifest reads as this step's and covers its world.</summary>
    private bool IsCommitted(string name, long step)
    {
        try
        {
            using var job = NativeFile.OpenDirectory(layout.JobDirectory);
            using var directory = StorageFile.OpenDirectory(job, name);
            var manifest = JobManifest.FromUtf8Json(StorageFile.ReadAll(directory, CheckpointLayout.ManifestFileName, StorageFile.ManifestLimit).Span);
            return manifest.ProblemAsManifestOf(name, step) is null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidDataException)
        {
            return false;
        }
    }

    public string DirectoryOf(JobManifest manifest, int rank) =>
        Path.Combine(layout.StepDirectory(manifest.Step),
            manifest.Shards.FirstOrDefault(s => s.Ranks.Any(r => r.Rank == rank))?.Directory ?? "");

    /// <summary>
    /// The shards that together cover the world: this pod's own for its ranks, then, for the others,
    /// the newest-named shard of the same world that adds only uncovered ranks (names sort the same on
    /// every pod, so pods that publish at once choose alike).
    /// </summary>
    private List<ShardName> ChooseShards(long step, JobWorld world, ShardName own, out List<int> missing)
    {
        var covered = new HashSet<int>(own.Ranks);
        var chosen = new List<ShardName> { own };
        foreach (var candidate in ListShards(step)
                     .Where(s => s.World == world.Id && s != own && s.Ranks.All(r => r < world.Size))
                     .OrderByDescending(s => s.FileName, StringComparer.Ordinal))
        {
            if (candidate.Ranks.All(r => !covered.Contains(r)))
            {
                covered.UnionWith(candidate.Ranks);
                chosen.Add(candidate);
            }
        }

        missing = Enumerable.Range(0, world.Size).Where(r => !covered.Contains(r)).ToList();
        return chosen;
    }

    private List<ShardName> ListShards(long step)
    {
        using var directory = StorageFile.OpenDirectoryIfExists(layout.ShardsDirectory(step));
        if (directory is null)
        {
            return [];
        }

        return NativeFile.ListDirectory(directory, layout.ShardsDirectory(step))
            .Select(bytes => ShardName.Parse(Encoding.UTF8.GetString(bytes)))
            .OfType<ShardName>()
            .ToList();
    }

    private ShardManifest? ReadShard(long step, ShardName name, JobWorld world)
    {
        try
        {
            using var directory = NativeFile.OpenDirectory(layout.ShardsDirectory(step));
            var shard = ShardManifest.FromUtf8Json(StorageFile.ReadAll(directory, name.FileName, StorageFile.ManifestLimit).Span);
            var problem = shard.Shard + ShardName.Extension != name.FileName ? "it names another shard"
                : shard.Step != step ? $"it holds step {shard.Step}"
                : shard.WorldId != world.Id || shard.WorldSize != world.Size ? $"it belongs to the world of {new JobWorld(shard.WorldSize, shard.WorldId)}"
                : shard.Directory != name.DataDirectory ? "its directory is not its own"
                : !shard.Ranks.Select(r => r.Rank).Order().SequenceEqual(name.Ranks) ? "its ranks differ from its name's"
                : null;
            if (problem is null)
            {
                return shard;
            }

            JobWideLog.ShardIgnored(logger, name.FileName, problem);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidDataException)
        {
            JobWideLog.ShardIgnored(logger, name.FileName, StorageErrors.Describe(e));
        }

        return null;
    }

    /// <returns>True when this pod's manifest is the one committed.</returns>
    private bool Publish(JobManifest manifest, ShardName own)
    {
        var stepDirectory = layout.StepDirectory(manifest.Step);
        var final = Path.Combine(stepDirectory, CheckpointLayout.ManifestFileName);
        var temp = Path.Combine(stepDirectory, $".{own.DataDirectory}.manifest.tmp");
        try
        {
            NativeFile.RemoveTree(temp);
            NativeFile.WriteNewFile(temp, manifest.ToUtf8Json());
            var linked = NativeFile.TryLinkNoReplace(temp, final);
            NativeFile.RemoveTree(temp);
            NativeFile.FsyncDirectory(stepDirectory);
            return linked;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StorageErrors.Failed($"writing the job manifest of {manifest.Id}", e);
        }
    }

    /// <summary>LATEST only moves forward: a pod publishing an older step late leaves it alone.</summary>
    private void MoveLatestForward(long step)
    {
        try
        {
            long? currentStep;
            try
            {
                var current = StorageFile.ReadAllIfExists(layout.JobDirectory, CheckpointLayout.LatestFileName, StorageFile.LatestPointerLimit);
                currentStep = current is { } bytes ? CheckpointLayout.ParseStepName(Encoding.UTF8.GetString(bytes.Span).Trim()) : null;
            }
            catch (StorageEntryException)
            {
                // Not a pointer at all (a FIFO, a symlink, a file too large): it names no step, so it is
                // replaced like one that names none, instead of holding the hint back for good.
                currentStep = null;
            }

            if (currentStep >= step)
            {
                return;
            }

            // A temp name of this pod's own (swept at start): pods moving LATEST at once never share one.
            WriteAtomically(layout.LatestFile, Encoding.UTF8.GetBytes(CheckpointLayout.StepName(step) + "\n"), $"{layout.LatestFile}.{_pod}.tmp");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A hint only: resume scans for the newest committed step whatever LATEST says.
            JobWideLog.LatestNotMoved(logger, CheckpointLayout.StepName(step), StorageErrors.Describe(e));
        }
    }

    private JobManifest? ReadJobManifest(long step) =>
        StorageFile.ReadAllIfExists(layout.StepDirectory(step), CheckpointLayout.ManifestFileName, StorageFile.ManifestLimit) is { } json
            ? JobManifest.FromUtf8Json(json.Span)
            : null;

    private static PublishResult.Committed Committed(JobManifest manifest, SealedShard shard, bool publishedHere) =>
        new(manifest, publishedHere, manifest.Shards.Any(s => s.Shard == shard.Manifest.Shard));

    private static void EnsureDirectory(string path, string parent)
    {
        if (Directory.Exists(path))
        {
            return;
        }

        Directory.CreateDirectory(path);
        NativeFile.FsyncDirectory(parent);
    }

    /// <summary>Temp file (whatever was in its way removed first), fsync, rename over <paramref name="path"/>, fsync the directory.</summary>
    private static void WriteAtomically(string path, byte[] content, string temp)
    {
        NativeFile.RemoveTree(temp);
        NativeFile.WriteNewFile(temp, content);
        File.Move(temp, path, overwrite: true);
        NativeFile.FsyncDirectory(Path.GetDirectoryName(path)!);
    }

    private static string NewAttempt() => Random.Shared.NextInt64().ToString("x16", CultureInfo.InvariantCulture)[..8];
}
