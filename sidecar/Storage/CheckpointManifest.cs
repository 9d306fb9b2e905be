using System.Text.Json;
using System.Text.Json.Serialization;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// manifest.json, written last into a checkpoint directory: its presence with matching files is what
/// makes a directory a checkpoint. Field names are a published format (README); bump
/// <see cref="CurrentFormatVersion"/> on any incompatible change.
/// </summary>
public sealed record CheckpointManifest
{
    public const int CurrentFormatVersion = 1;

    public required int FormatVersion { get; init; }

    public required string Id { get; init; }

    public required long Step { get; init; }

    public required DateTimeOffset Created { get; init; }

    /// <summary>preemption, periodic or manual.</summary>
    public required string Reason { get; init; }

    public required IReadOnlyList<ManifestFile> Files { get; init; }

    public required IReadOnlyList<ManifestRank> Ranks { get; init; }

    /// <summary>The phases known when the manifest is written; commit follows it.</summary>
    public required ManifestTimings Timings { get; init; }

    public long TotalBytes => Files.Sum(f => f.Size);

    /// <summary>Reads a manifest the way resume does (<see cref="StorageFile"/>): capped, never through a symlink.</summary>
    public static CheckpointManifest Read(string path)
    {
        using var directory = NativeFile.OpenDirectory(Path.GetDirectoryName(path)!);
        return FromUtf8Json(StorageFile.ReadAll(directory, Path.GetFileName(path), StorageFile.ManifestLimit).Span);
    }

    /// <exception cref="JsonException">Not a manifest.</exception>
    /// <exception cref="InvalidDataException">A manifest with a null where a file, a rank or a value must be.</exception>
    public static CheckpointManifest FromUtf8Json(ReadOnlySpan<byte> json)
    {
        var manifest = JsonSerializer.Deserialize(json, ManifestJsonContext.Default.CheckpointManifest)
            ?? throw new InvalidDataException("the manifest is null");
        // The serializer refuses null for a property, but not for an element of a list or a dictionary;
        // whoever reads the manifest next (resume, the gRPC answer) must not meet one.
        if (manifest.Id is null || manifest.Reason is null || manifest.Timings is null)
        {
            throw new InvalidDataException("the manifest lacks its id, reason or timings");
        }

        if (manifest.Files is null || manifest.Files.Any(f => f is null || f.Path is null || f.Xxh128 is null))
        {
            throw new InvalidDataException("the manifest lists a file that is null or lacks its path or hash");
        }

        if (manifest.Ranks is null || manifest.Ranks.Any(r => r is null || r.Metadata is null || r.Metadata.Values.Any(v => v is null)))
        {
            throw new InvalidDataException("the manifest lists a rank that is null or whose metadata holds a null");
        }

        return manifest;
    }

    public byte[] ToUtf8Json() => JsonSerializer.SerializeToUtf8Bytes(this, ManifestJsonContext.Default.CheckpointManifest);
}

/// <param name="Path">Relative to the checkpoint directory, '/'-separated.</param>
/// <param name="Xxh128">XXH128 of the content, 32 lowercase hex digits, as `xxhsum -H2` prints it.</param>
/// <param name="Verification">
/// How the flush verified the file before the commit: <see cref="ReadBack"/> or <see cref="WriteHash"/>;
/// absent in manifests written before it was recorded. Left out of the JSON when null, so a manifest
/// without it reads and writes byte for byte as before; sidecars that predate it skip the member
/// (System.Text.Json ignores unknown members unless told otherwise).
/// </param>
public sealed record ManifestFile(
    string Path, long Size, string Xxh128,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Verification = null)
{
    /// <summary>Re-read from storage with the client cache bypassed, and its hash compared.</summary>
    public const string ReadBack = "read-back";

    /// <summary>Hashed while written and fsynced; not read back (resume verifies it).</summary>
    public const string WriteHash = "write-hash";
}

public sealed record ManifestRank(int Rank, long Step, IReadOnlyDictionary<string, string> Metadata);

public sealed record ManifestTimings(
    double BudgetSeconds, double NotifySeconds, double DumpSeconds, double CopySeconds, double VerifySeconds);

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    WriteIndented = true,
    IgnoreReadOnlyProperties = true,
    RespectRequiredConstructorParameters = true,
    RespectNullableAnnotations = true)]
[JsonSerializable(typeof(CheckpointManifest))]
internal sealed partial class ManifestJsonContext : JsonSerializerContext;
