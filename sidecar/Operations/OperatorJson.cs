using System.Text.Json.Serialization;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;

namespace Checkpoint.Sidecar.Operations;

// What `--json` prints: a published format (README, "Operator CLI"). Fields are only ever added;
// a change that breaks a reader bumps FormatVersion. Absent values are written as null, so every
// key is always there.

/// <summary><c>list --json</c>.</summary>
public sealed record ListReport(
    int FormatVersion, string JobDirectory, string? Latest, string? ResumeWouldPick, IReadOnlyList<CheckpointEntry> Checkpoints);

/// <summary>One checkpoint of the job as <c>list</c> sees it (sizes checked, contents not re-hashed).</summary>
/// <param name="Id">The directory's name: <c>step-000001234</c>, or a format-1 checkpoint id.</param>
/// <param name="Format">2: a job-wide step; 1: a checkpoint of one pod from before job-wide checkpoints.</param>
/// <param name="State"><c>committed</c>, <c>uncommitted</c> (no job manifest yet: in flight, or abandoned) or <c>damaged</c>.</param>
/// <param name="Problem">Why it is damaged, or why its shards could not be read; null otherwise.</param>
/// <param name="MissingRanks">Uncommitted: ranks of the world without a sealed shard; null when no shard says how large the world is.</param>
/// <param name="Shards">Sealed shards (committed: in the manifest; uncommitted: on storage).</param>
/// <param name="Pods">Pods whose files it holds.</param>
/// <param name="Created">When it was committed (uncommitted: when its newest shard was sealed).</param>
/// <param name="Latest">LATEST names it (a hint that only moves forward).</param>
/// <param name="ResumeWouldPick">The sidecar would resume from it (when its contents also hash right; <c>verify</c> checks).</param>
public sealed record CheckpointEntry(
    string Id, long? Step, int Format, string State, string? Problem, int? MissingRanks, string? Reason, int? WorldSize,
    int? Shards, int? Pods, long? Bytes, DateTimeOffset? Created, double? AgeSeconds, bool Latest, bool ResumeWouldPick);

/// <summary><c>verify --json</c>.</summary>
/// <param name="ResumeWouldPick">After a failure, the checkpoint the sidecar would resume from instead (hashes checked); null when all passed.</param>
public sealed record VerifyReport(int FormatVersion, string JobDirectory, IReadOnlyList<VerifyResult> Results, string? ResumeWouldPick);

/// <param name="Outcome"><c>ok</c>, <c>failed</c>, or <c>uncommitted</c> (nothing to verify yet).</param>
/// <param name="Problem">Which file, and why, when it failed.</param>
/// <param name="Bytes">Bytes re-read and hashed.</param>
public sealed record VerifyResult(string Id, long? Step, string Outcome, string? Problem, long? Bytes);

/// <summary><c>inspect --json</c>: the manifests as stored (their published formats) and the flush records of the checkpoint.</summary>
/// <param name="JobManifest">Format 2, committed or damaged: <c>step-N/manifest.json</c>.</param>
/// <param name="Shards">Format 2, not committed: the sealed shard manifests in <c>step-N/shards/</c>.</param>
/// <param name="Manifest">Format 1: <c>&lt;id&gt;/manifest.json</c>.</param>
/// <param name="FlushRecords">Records of flushes at this step (format 1: of this id), newest first, each with its timings and grace period.</param>
public sealed record InspectReport(
    int FormatVersion, string Id, long? Step, int Format, string State, string? Problem, JobManifest? JobManifest,
    IReadOnlyList<ShardManifest>? Shards, CheckpointManifest? Manifest, IReadOnlyList<FlushRecord> FlushRecords);

/// <summary><c>prune --json</c>.</summary>
/// <param name="Removed">Names taken out of the job directory (with --dry-run: that would be).</param>
/// <param name="Note">Why nothing could be pruned, when so.</param>
public sealed record PruneReport(int FormatVersion, string JobDirectory, int Keep, bool DryRun, string? ResumeWouldPick, IReadOnlyList<string> Removed, string? Note);

/// <summary><c>version --json</c>.</summary>
public sealed record VersionReport(string Version, string? Commit);

/// <summary>Every operator report; source-generated for Native AOT.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    WriteIndented = true,
    IgnoreReadOnlyProperties = true)]
[JsonSerializable(typeof(ListReport))]
[JsonSerializable(typeof(VerifyReport))]
[JsonSerializable(typeof(InspectReport))]
[JsonSerializable(typeof(PruneReport))]
[JsonSerializable(typeof(VersionReport))]
internal sealed partial class OperatorJsonContext : JsonSerializerContext
{
    public const int FormatVersion = 1;
}
