using System.Globalization;
using System.Text;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;
using Microsoft.Win32.SafeHandles;

namespace Checkpoint.Sidecar.Operations;

/// <summary>
/// The checkpoints of one job as an operator sees them, read with the sidecar's own readers and
/// checks (<see cref="CheckpointStore"/>, <see cref="JobManifest"/>, <see cref="StorageFile"/>): a
/// checkpoint is committed, uncommitted or damaged here exactly when resume would say so.
/// </summary>
internal sealed class CheckpointInventory(CheckpointStore store, int bufferSize)
{
    public CheckpointLayout Layout => store.Layout;

    public bool JobDirectoryExists => Directory.Exists(Layout.JobDirectory);

    /// <summary>Every name that may be a checkpoint: steps newest first, then format-1 checkpoints newest first.</summary>
    public IReadOnlyList<string> Names() =>
        [.. Layout.StepCandidates().Select(c => c.Name), .. Layout.CommittedCandidates().OrderDescending(StringComparer.Ordinal)];

    /// <summary>The checkpoint the sidecar would resume from now, by the same search.</summary>
    /// <param name="verifyHashes">Hash every file of the candidate, as the sidecar does with CHECKPOINT_VERIFY_ON_RESUME (the default).</param>
    public string? ResumePick(bool verifyHashes, CancellationToken cancellationToken) =>
        store.FindLatestValid(verifyHashes, bufferSize, onInvalid: null, cancellationToken)?.Id;

    public string? Latest() => store.ReadLatestId();

    /// <summary>Checks one checkpoint as resume checks it (sizes, or sizes and hashes).</summary>
    public CheckpointStore.Validation Check(string name, bool verifyHashes, CancellationToken cancellationToken) =>
        store.Check(name, verifyHashes, bufferSize, cancellationToken);

    /// <summary>A checkpoint named by its id (<c>step-000000120</c>, a format-1 id) or its step (<c>120</c>).</summary>
    /// <returns>null when the job has none of that name or step.</returns>
    public string? Resolve(string idOrStep)
    {
        var names = Names();
        var name = long.TryParse(idOrStep, NumberStyles.None, CultureInfo.InvariantCulture, out var step) ? CheckpointLayout.StepName(step) : idOrStep;
        return names.Contains(name, StringComparer.Ordinal) ? name : null;
    }

    public CheckpointEntry Describe(string name, string? latest, string? resumePick, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var step = CheckpointLayout.ParseStepName(name);
        var format = step is null ? CheckpointManifest.CurrentFormatVersion : JobManifest.CurrentFormatVersion;
        var entry = new CheckpointEntry(name, step, format, "uncommitted", null, null, null, null, null, null, null, null, null,
            Latest: name == latest, ResumeWouldPick: name == resumePick);
        var check = Check(name, verifyHashes: false, cancellationToken);
        if (check.Checkpoint is { } committed)
        {
            return entry with
            {
                State = "committed",
                Step = committed.Step,
                Reason = committed.Reason,
                WorldSize = committed.WorldSize,
                Shards = step is null ? 1 : ReadJobManifest(name, out _)?.Shards.Count,
                Pods = committed.Ranks.Values.Select(r => r.Directory).Distinct(StringComparer.Ordinal).Count(),
                Bytes = committed.TotalBytes,
                Created = committed.Created,
                AgeSeconds = (now - committed.Created).TotalSeconds,
            };
        }

        if (check.Problem is { } problem)
        {
            entry = entry with { State = "damaged", Problem = problem };
            if (step is not null && ReadJobManifest(name, out _) is { } manifest)
            {
                return entry with
                {
                    Reason = manifest.Reason,
                    WorldSize = manifest.WorldSize,
                    Shards = manifest.Shards.Count,
                    Pods = manifest.Shards.Select(s => s.Pod).Distinct(StringComparer.Ordinal).Count(),
                    Bytes = manifest.TotalBytes,
                    Created = manifest.Created,
                    AgeSeconds = (now - manifest.Created).TotalSeconds,
                };
            }

            if (step is null && ReadFormat1Manifest(name, out _) is { } legacy)
            {
                return entry with
                {
                    Step = legacy.Step,
                    Reason = legacy.Reason,
                    Bytes = legacy.TotalBytes,
                    Created = legacy.Created,
                    AgeSeconds = (now - legacy.Created).TotalSeconds,
                };
            }

            return entry;
        }

        // No job manifest: a flush in flight, or one that never gathered every rank.
        var shards = ReadShards(name, out var shardProblem);
        entry = entry with { Problem = shardProblem, Shards = shards.Count };
        if (shards.Count == 0)
        {
            return entry;
        }

        // The world with the most ranks sealed is the one that may still commit.
        var world = shards.GroupBy(s => (s.WorldId, s.WorldSize))
            .Select(g => (Shards: g.ToList(), Covered: g.SelectMany(s => s.Ranks).Select(r => r.Rank).Where(r => r >= 0 && r < g.Key.WorldSize).Distinct().Count()))
            .MaxBy(w => w.Covered);
        var newest = world.Shards.MaxBy(s => s.Sealed)!;
        return entry with
        {
            MissingRanks = Math.Max(0, newest.WorldSize - world.Covered),
            Reason = newest.Reason,
            WorldSize = newest.WorldSize,
            Shards = world.Shards.Count,
            Pods = world.Shards.Select(s => s.Pod).Distinct(StringComparer.Ordinal).Count(),
            Bytes = world.Shards.Sum(s => s.TotalBytes),
            Created = newest.Sealed,
            AgeSeconds = (now - newest.Sealed).TotalSeconds,
        };
    }

    /// <summary>The job manifest of a step, read as resume reads it; null (and why) when there is none to read.</summary>
    public JobManifest? ReadJobManifest(string name, out string? problem) =>
        ReadInCheckpoint(name, CheckpointLayout.ManifestFileName, json => JobManifest.FromUtf8Json(json.Span), out problem);

    public CheckpointManifest? ReadFormat1Manifest(string id, out string? problem) =>
        ReadInCheckpoint(id, CheckpointLayout.ManifestFileName, json => CheckpointManifest.FromUtf8Json(json.Span), out problem);

    /// <summary>The sealed shard manifests of a step that are readable, in name order; why others are not.</summary>
    public IReadOnlyList<ShardManifest> ReadShards(string name, out string? problem)
    {
        problem = null;
        var shards = new List<ShardManifest>();
        var unreadable = new List<string>();
        try
        {
            using var job = NativeFile.OpenDirectory(Layout.JobDirectory);
            using var step = StorageFile.OpenDirectory(job, name);
            SafeFileHandle directory;
            try
            {
                directory = StorageFile.OpenDirectory(step, CheckpointLayout.ShardsDirectoryName);
            }
            catch (StorageEntryException e) when (e.IsMissing)
            {
                return shards;
            }

            using (directory)
            {
                var path = Path.Combine(Layout.JobDirectory, name, CheckpointLayout.ShardsDirectoryName);
                foreach (var file in NativeFile.ListDirectory(directory, path).Select(Encoding.UTF8.GetString).Where(f => ShardName.Parse(f) is not null).Order(StringComparer.Ordinal))
                {
                    try
                    {
                        shards.Add(ShardManifest.FromUtf8Json(StorageFile.ReadAll(directory, file, StorageFile.ManifestLimit).Span));
                    }
                    catch (Exception e) when (e is IOException or System.Text.Json.JsonException or InvalidDataException)
                    {
                        unreadable.Add($"shard {UserText.Quote(file)}: {StorageErrors.Describe(e)}");
                    }
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            unreadable.Add(StorageErrors.Describe(e));
        }

        problem = unreadable.Count == 0 ? null : string.Join("; ", unreadable.Take(3)) + (unreadable.Count > 3 ? $"; and {unreadable.Count - 3} more" : "");
        return shards;
    }

    private T? ReadInCheckpoint<T>(string name, string file, Func<ReadOnlyMemory<byte>, T> parse, out string? problem)
        where T : class
    {
        try
        {
            using var job = NativeFile.OpenDirectory(Layout.JobDirectory);
            using var directory = StorageFile.OpenDirectory(job, name);
            problem = null;
            return parse(StorageFile.ReadAll(directory, file, StorageFile.ManifestLimit));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidDataException)
        {
            problem = StorageErrors.Describe(e);
            return null;
        }
    }
}
