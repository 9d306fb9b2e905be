using System.Text.Json;
using System.Text.Json.Serialization;

namespace Checkpoint.Sidecar.Storage.JobWide;

/// <summary>
/// <c>step-N/shards/&lt;shard&gt;.json</c>: one pod's sealed part of a job-wide checkpoint. Written
/// atomically (temp, fsync, rename, fsync directory) after every file of it was copied and verified,
/// so its presence says "these ranks' files are on storage, whole". Field names are a published
/// format (README).
/// </summary>
public sealed record ShardManifest
{
    public required int FormatVersion { get; init; }

    /// <summary>The shard's file name without <c>.json</c>.</summary>
    public required string Shard { get; init; }

    public required string Pod { get; init; }

    public required string WorldId { get; init; }

    public required int WorldSize { get; init; }

    public required long Step { get; init; }

    /// <summary>preemption, periodic or manual: why this pod dumped.</summary>
    public required string Reason { get; init; }

    public required DateTimeOffset Sealed { get; init; }

    /// <summary>The directory under the step holding the files; each file's path is relative to it.</summary>
    public required string Directory { get; init; }

    public required IReadOnlyList<ManifestFile> Files { get; init; }

    public required IReadOnlyList<ManifestRank> Ranks { get; init; }

    public required ManifestTimings Timings { get; init; }

    public long TotalBytes => Files.Sum(f => f.Size);

    public byte[] ToUtf8Json() => JsonSerializer.SerializeToUtf8Bytes(this, JobManifestJsonContext.Default.ShardManifest);

    /// <exception cref="JsonException">Not a shard manifest.</exception>
    /// <exception cref="InvalidDataException">One with a null where a value must be.</exception>
    public static ShardManifest FromUtf8Json(ReadOnlySpan<byte> json) =>
        RequireComplete(JsonSerializer.Deserialize(json, JobManifestJsonContext.Default.ShardManifest));

    internal static ShardManifest RequireComplete(ShardManifest? shard)
    {
        // The serializer refuses null for a property, but not for an element of a list or a dictionary.
        if (shard is null || shard.Shard is null || shard.Pod is null || shard.WorldId is null || shard.Reason is null
            || shard.Directory is null || shard.Timings is null)
        {
            throw new InvalidDataException("a shard is null or lacks its name, pod, world, reason, directory or timings");
        }

        if (shard.Files is null || shard.Files.Any(f => f is null || f.Path is null || f.Xxh128 is null))
        {
            throw new InvalidDataException($"shard {UserText.Quote(shard.Shard)} lists a file that is null or lacks its path or hash");
        }

        if (shard.Ranks is null || shard.Ranks.Count == 0
            || shard.Ranks.Any(r => r is null || r.Metadata is null || r.Metadata.Values.Any(v => v is null)))
        {
            throw new InvalidDataException($"shard {UserText.Quote(shard.Shard)} lists no rank, or one that is null or holds a null");
        }

        return shard;
    }
}

/// <summary>
/// <c>step-N/manifest.json</c>: the commit of a job-wide checkpoint. Written last, by whichever pod
/// first sees shards covering every rank of the world, through a link that never replaces an
/// existing manifest: the first writer wins and every pod then reads the same one. It holds every
/// shard in full, so it alone describes the checkpoint (shard files are only for coordination).
/// </summary>
public sealed record JobManifest
{
    public const int CurrentFormatVersion = 2;

    public required int FormatVersion { get; init; }

    /// <summary>The step directory's name, <c>step-000001234</c>.</summary>
    public required string Id { get; init; }

    public required long Step { get; init; }

    public required int WorldSize { get; init; }

    public required string WorldId { get; init; }

    /// <summary>Why the pod that published it dumped.</summary>
    public required string Reason { get; init; }

    public required DateTimeOffset Created { get; init; }

    /// <summary>The pod that wrote this manifest.</summary>
    public required string PublishedBy { get; init; }

    /// <summary>Ordered by their first rank; together they hold every rank 0..WorldSize-1 exactly once.</summary>
    public required IReadOnlyList<ShardManifest> Shards { get; init; }

    public long TotalBytes => Shards.Sum(s => s.TotalBytes);

    public byte[] ToUtf8Json() => JsonSerializer.SerializeToUtf8Bytes(this, JobManifestJsonContext.Default.JobManifest);

    /// <exception cref="JsonException">Not a job manifest.</exception>
    /// <exception cref="InvalidDataException">One with a null where a value must be.</exception>
    public static JobManifest FromUtf8Json(ReadOnlySpan<byte> json)
    {
        var manifest = JsonSerializer.Deserialize(json, JobManifestJsonContext.Default.JobManifest)
            ?? throw new InvalidDataException("the manifest is null");
        if (manifest.Id is null || manifest.WorldId is null || manifest.Reason is null || manifest.PublishedBy is null || manifest.Shards is null)
        {
            throw new InvalidDataException("the manifest lacks its id, world, reason, publisher or shards");
        }

        foreach (var shard in manifest.Shards)
        {
            ShardManifest.RequireComplete(shard);
        }

        return manifest;
    }

    /// <summary>
    /// Why this is not the job manifest of <paramref name="stepName"/> (its format, name or step differ, or
    /// its shards do not hold the world), or null when it is. What resume and retention both ask.
    /// </summary>
    public string? ProblemAsManifestOf(string stepName, long step) =>
        FormatVersion != CurrentFormatVersion ? $"job manifest format version {FormatVersion} is not {CurrentFormatVersion}"
        : Id != stepName ? $"job manifest names checkpoint {UserText.Quote(Id)}"
        : Step != step ? $"job manifest holds step {Step}"
        : CoverageProblem();

    /// <summary>Why the shards do not hold every rank of the world exactly once, or null when they do.</summary>
    public string? CoverageProblem()
    {
        if (WorldSize < 1)
        {
            return $"world size {WorldSize} is not a positive number";
        }

        var seen = new HashSet<int>();
        foreach (var rank in Shards.SelectMany(s => s.Ranks).Select(r => r.Rank))
        {
            if (rank < 0 || rank >= WorldSize)
            {
                return $"rank {rank} is outside the world of {WorldSize}";
            }

            if (!seen.Add(rank))
            {
                return $"rank {rank} is in more than one shard";
            }
        }

        return seen.Count == WorldSize ? null : $"ranks {JobWideText.Ranks(Enumerable.Range(0, WorldSize).Where(r => !seen.Contains(r)))} have no shard";
    }
}

internal static class JobWideText
{
    /// <summary>A list of ranks for people, shortened: <c>0-3, 8</c>.</summary>
    public static string Ranks(IEnumerable<int> ranks) => ShardName.FormatRanks(ranks.Order().ToList()).Replace(".", ", ", StringComparison.Ordinal);
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    WriteIndented = true,
    IgnoreReadOnlyProperties = true,
    RespectRequiredConstructorParameters = true,
    RespectNullableAnnotations = true)]
[JsonSerializable(typeof(ShardManifest))]
[JsonSerializable(typeof(JobManifest))]
internal sealed partial class JobManifestJsonContext : JsonSerializerContext;
