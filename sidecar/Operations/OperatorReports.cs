using System.Globalization;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;
using Microsoft.Extensions.Logging.Abstractions;
using static Checkpoint.Sidecar.Operations.OperatorCommands;

namespace Checkpoint.Sidecar.Operations;

/// <summary>The four commands that read (and, for prune, retire) a job's checkpoints.</summary>
internal static class OperatorReports
{
    private const int Version = OperatorJsonContext.FormatVersion;

    private static readonly string[] ListHeader = ["STEP", "ID", "STATE", "REASON", "WORLD", "PODS", "SIZE", "AGE", ""];

    private static readonly string[] ShardHeader = ["  DIRECTORY", "POD", "RANKS", "FILES", "SIZE", "SEALED", "TIMINGS"];

    public static int List(CommandContext context, OperatorArguments arguments)
    {
        var inventory = context.OpenJob(arguments);
        var job = inventory.Layout.JobDirectory;
        if (!inventory.JobDirectoryExists)
        {
            return NoJobDirectory(context, arguments, job, () => new ListReport(Version, job, null, null, []), OperatorJsonContext.Default.ListReport);
        }

        var latest = inventory.Latest();
        var pick = inventory.ResumePick(verifyHashes: false, context.CancellationToken);
        var now = context.Time.GetUtcNow();
        var entries = inventory.Names().Select(n => inventory.Describe(n, latest, pick, now, context.CancellationToken)).ToList();
        if (arguments.Has("--json"))
        {
            context.WriteJson(new ListReport(Version, job, latest, pick, entries), OperatorJsonContext.Default.ListReport);
            return Success;
        }

        var output = context.Output;
        output.WriteLine($"Job directory: {OperatorText.Safe(job)}");
        var latestText = string.IsNullOrEmpty(latest) ? "-" : OperatorText.Safe(latest);
        output.WriteLine($"LATEST (a hint): {latestText}    resume would pick: {pick ?? "nothing"}"
            + (pick is null ? "" : " (sizes checked; 'verify' re-hashes)"));
        if (entries.Count == 0)
        {
            output.WriteLine("No checkpoints.");
            return Success;
        }

        output.WriteLine();
        var rows = new List<string[]> { ListHeader };
        rows.AddRange(entries.Select(e => new[]
        {
            e.Step?.ToString(CultureInfo.InvariantCulture) ?? "-",
            e.Id,
            e.State + (e.MissingRanks is { } m ? $" ({m} rank(s) missing)" : ""),
            OperatorText.Safe(e.Reason) is { Length: > 0 } r ? r : "-",
            e.WorldSize?.ToString(CultureInfo.InvariantCulture) ?? "-",
            e.Pods?.ToString(CultureInfo.InvariantCulture) ?? "-",
            OperatorText.Bytes(e.Bytes),
            OperatorText.Age(e.AgeSeconds),
            string.Join(", ", new[] { e.ResumeWouldPick ? "<- resume" : null, e.Latest ? "LATEST" : null }.OfType<string>()),
        }));
        OperatorText.Table(output, rows);
        foreach (var e in entries.Where(e => e.Problem is not null))
        {
            output.WriteLine($"{e.Id}: {OperatorText.Safe(e.Problem)}");
        }

        return Success;
    }

    public static int Verify(CommandContext context, OperatorArguments arguments)
    {
        var inventory = context.OpenJob(arguments);
        var job = inventory.Layout.JobDirectory;
        var all = arguments.Has("--all");
        if (all && arguments.Positionals.Count > 0)
        {
            throw new UsageException("give a checkpoint or --all, not both");
        }

        IReadOnlyList<string> names;
        if (!inventory.JobDirectoryExists)
        {
            names = [];
        }
        else if (all)
        {
            names = inventory.Names();
        }
        else if (arguments.Positionals is [var requested])
        {
            names = [Resolve(inventory, requested)];
        }
        else
        {
            names = inventory.ResumePick(verifyHashes: false, context.CancellationToken) is { } pick ? [pick] : [];
        }

        var results = new List<VerifyResult>();
        foreach (var name in names)
        {
            var check = inventory.Check(name, verifyHashes: true, context.CancellationToken);
            var step = check.Checkpoint?.Step ?? CheckpointLayout.ParseStepName(name);
            results.Add(check switch
            {
                { Checkpoint: { } ok } => new VerifyResult(name, step, "ok", null, ok.TotalBytes),
                { Problem: { } problem } => new VerifyResult(name, step, "failed", problem, null),
                _ => new VerifyResult(name, step, "uncommitted", "it has no job manifest (a flush in flight, or one that never gathered every rank)", null),
            });
        }

        // An uncommitted step met by --all is not a failure (a flush may be writing it); one asked for by name is.
        var failed = results.Count == 0 || results.Any(r => r.Outcome == "failed" || (r.Outcome == "uncommitted" && !all));
        var fallback = failed && inventory.JobDirectoryExists ? inventory.ResumePick(verifyHashes: true, context.CancellationToken) : null;
        if (arguments.Has("--json"))
        {
            context.WriteJson(new VerifyReport(Version, job, results, fallback), OperatorJsonContext.Default.VerifyReport);
            return failed ? Failed : Success;
        }

        var output = context.Output;
        if (results.Count == 0)
        {
            output.WriteLine($"No committed checkpoint to verify in {OperatorText.Safe(job)}.");
            return Failed;
        }

        foreach (var r in results)
        {
            output.WriteLine(r.Outcome switch
            {
                "ok" => $"ok          {r.Id}  {OperatorText.Bytes(r.Bytes)} re-read: every file's size and XXH128 match the manifest",
                "failed" => $"FAILED      {r.Id}  {OperatorText.Safe(r.Problem)}",
                _ => $"uncommitted {r.Id}  not verified: {r.Problem}",
            });
        }

        if (failed)
        {
            output.WriteLine(fallback is null ? "Resume would find no checkpoint that verifies." : $"Resume would pick {fallback} (it verifies).");
        }

        return failed ? Failed : Success;
    }

    public static int Inspect(CommandContext context, OperatorArguments arguments)
    {
        var inventory = context.OpenJob(arguments);
        if (arguments.Positionals is not [var requested])
        {
            throw new UsageException("name the checkpoint to inspect: its id (step-000000120) or step (120)");
        }

        var name = inventory.JobDirectoryExists ? Resolve(inventory, requested) : throw NotFound(inventory, requested);
        var now = context.Time.GetUtcNow();
        var entry = inventory.Describe(name, inventory.Latest(), null, now, context.CancellationToken);
        var jobManifest = entry.Format == JobManifest.CurrentFormatVersion && entry.State != "uncommitted" ? inventory.ReadJobManifest(name, out _) : null;
        var shards = entry.Format == JobManifest.CurrentFormatVersion && entry.State == "uncommitted" ? inventory.ReadShards(name, out _) : null;
        var manifest = entry.Format == CheckpointManifest.CurrentFormatVersion ? inventory.ReadFormat1Manifest(name, out _) : null;
        var step = jobManifest?.Step ?? manifest?.Step ?? entry.Step;
        var records = new FlushRecordStore(inventory.Layout, NullLogger<FlushRecordStore>.Instance)
            .ReadTrusted()
            .Where(r => entry.Format == JobManifest.CurrentFormatVersion ? r.Step == step : r.CheckpointId == name)
            .ToList();
        if (arguments.Has("--json"))
        {
            context.WriteJson(
                new InspectReport(Version, name, step, entry.Format, entry.State, entry.Problem, jobManifest, shards, manifest, records),
                OperatorJsonContext.Default.InspectReport);
            return Success;
        }

        var output = context.Output;
        output.WriteLine($"Checkpoint {name} ({(entry.Format == 2 ? "job-wide, format 2" : "one pod, format 1")}): {entry.State}"
            + (entry.MissingRanks is { } missing ? $", {missing} rank(s) of {entry.WorldSize} without a sealed shard" : ""));
        if (entry.Problem is not null)
        {
            output.WriteLine($"  problem: {OperatorText.Safe(entry.Problem)}");
        }

        if (jobManifest is not null)
        {
            output.WriteLine($"  step {jobManifest.Step}, reason {OperatorText.Safe(jobManifest.Reason)}, world {jobManifest.WorldSize}"
                + (jobManifest.WorldId.Length > 0 ? $" (run {OperatorText.Safe(jobManifest.WorldId)})" : "")
                + $", {OperatorText.Bytes(jobManifest.TotalBytes)} in {jobManifest.Shards.Count} shard(s)");
            output.WriteLine($"  created {jobManifest.Created:u} ({OperatorText.Age((now - jobManifest.Created).TotalSeconds)} ago), published by {OperatorText.Safe(jobManifest.PublishedBy)}");
        }

        if (manifest is not null)
        {
            output.WriteLine($"  step {manifest.Step}, reason {OperatorText.Safe(manifest.Reason)}, {manifest.Ranks.Count} rank(s), {manifest.Files.Count} file(s), {OperatorText.Bytes(manifest.TotalBytes)}");
            output.WriteLine($"  created {manifest.Created:u} ({OperatorText.Age((now - manifest.Created).TotalSeconds)} ago)");
            output.WriteLine($"  timings: {Timings(manifest.Timings)}");
        }

        var shardList = jobManifest?.Shards ?? shards ?? [];
        if (Verification(jobManifest?.Shards.SelectMany(s => s.Files) ?? manifest?.Files ?? shardList.SelectMany(s => s.Files)) is { } verification)
        {
            output.WriteLine($"  verified before the commit: {verification}");
        }

        if (shardList.Count > 0)
        {
            output.WriteLine();
            output.WriteLine("Shards:");
            var rows = new List<string[]> { ShardHeader };
            rows.AddRange(shardList.Select(s => new[]
            {
                "  " + OperatorText.Safe(s.Directory),
                OperatorText.Safe(s.Pod),
                JobWideText.Ranks(s.Ranks.Select(r => r.Rank)),
                s.Files.Count.ToString(CultureInfo.InvariantCulture),
                OperatorText.Bytes(s.TotalBytes),
                s.Sealed.ToString("u", CultureInfo.InvariantCulture),
                Timings(s.Timings),
            }));
            OperatorText.Table(output, rows);
        }

        output.WriteLine();
        output.WriteLine(records.Count == 0
            ? "No flush record of it (records are kept for the newest 100 flushes of the job)."
            : $"Flush records ({records.Count}, newest first), phases against the grace period:");
        foreach (var r in records)
        {
            output.WriteLine($"  {r.EndedAt:u}  pod {OperatorText.Safe(r.Pod)}  {OperatorText.Safe(r.Reason)}"
                + (r.Cause is null ? "" : $" ({OperatorText.Safe(r.Cause)})")
                + $"  {OperatorText.Safe(r.Outcome)}  grace {r.GracePeriodSeconds:0.#} s  "
                + (r.DeadlineMissed ? "DEADLINE MISSED" : "deadline met"));
            if (r.Timings is { } t)
            {
                var grace = r.GracePeriodSeconds;
                string Phase(string phase, double seconds) => $"{phase} {OperatorText.Seconds(seconds)} ({OperatorText.Percent(grace > 0 ? seconds / grace : double.NaN)})";
                output.WriteLine("    " + string.Join("  ", Phase("notify", t.NotifySeconds), Phase("dump", t.DumpSeconds), Phase("copy", t.CopySeconds),
                    Phase("verify", t.VerifySeconds), Phase("commit", t.CommitSeconds)));
                output.WriteLine($"    {Phase("total", t.TotalSeconds)} of {grace:0.#} s; waiting for other pods {OperatorText.Seconds(t.CommitWaitSeconds)}; {OperatorText.Bytes(t.Bytes)}");
            }

            if (r.Error is not null || r.FailureCause is not null)
            {
                output.WriteLine($"    failed ({OperatorText.Safe(r.FailureCause)}): {OperatorText.Safe(r.Error)}");
            }
        }

        return Success;
    }

    public static int Prune(CommandContext context, OperatorArguments arguments)
    {
        var keepText = arguments.Value("--keep") ?? throw new UsageException("--keep N is required: how many committed checkpoints to keep");
        if (!int.TryParse(keepText, NumberStyles.None, CultureInfo.InvariantCulture, out var keep) || keep < 1)
        {
            throw new UsageException($"--keep: {OperatorText.Quote(keepText)} must be a whole number of at least 1");
        }

        var inventory = context.OpenJob(arguments);
        var job = inventory.Layout.JobDirectory;
        var dryRun = arguments.Has("--dry-run");
        var pick = inventory.JobDirectoryExists ? inventory.ResumePick(verifyHashes: true, context.CancellationToken) : null;
        IReadOnlyList<string> removed = [];
        string? note = null;
        if (pick is null)
        {
            note = "no checkpoint that resume could pick: nothing is removed";
        }
        else if (CheckpointLayout.ParseStepName(pick) is not { } pickStep)
        {
            // Retention counts steps by their manifests alone; with no step that verifies it could
            // retire the format-1 checkpoint that resume depends on.
            note = $"resume would pick {pick} (format 1) because no job-wide step verifies: nothing is removed";
        }
        else
        {
            // The sidecar's own retention, as if the step resume picks had just been committed: it keeps
            // that step and the newest `keep` committed ones, and never touches a step newer than it
            // without a manifest (a flush may be writing it).
            var target = new SharedDirectoryTarget(
                inventory.Layout, new CheckpointCopier(1, BufferSize, context.Time), "operator", NullLogger<SharedDirectoryTarget>.Instance);
            removed = dryRun ? target.PlanRetention(keep, pickStep) : target.ApplyRetention(keep, pickStep);
        }

        if (arguments.Has("--json"))
        {
            context.WriteJson(new PruneReport(Version, job, keep, dryRun, pick, removed, note), OperatorJsonContext.Default.PruneReport);
            return Success;
        }

        var output = context.Output;
        if (note is not null)
        {
            output.WriteLine(char.ToUpperInvariant(note[0]) + note[1..] + ".");
            return Success;
        }

        output.WriteLine($"Resume would pick {pick} (it verifies); keeping it and the newest {keep} committed step(s).");
        foreach (var name in removed)
        {
            output.WriteLine($"{(dryRun ? "would remove" : "removed")} {OperatorText.Safe(name)}");
        }

        output.WriteLine(removed.Count == 0 ? "Nothing to remove." : $"{removed.Count} {(dryRun ? "would be removed (dry run)" : "removed")}.");
        return Success;
    }

    private static string Resolve(CheckpointInventory inventory, string requested) =>
        inventory.Resolve(requested) ?? throw NotFound(inventory, requested);

    private static UsageException NotFound(CheckpointInventory inventory, string requested) =>
        new($"no checkpoint {OperatorText.Quote(requested)} in {OperatorText.Quote(inventory.Layout.JobDirectory)} (see 'checkpoint-sidecar list')");

    private static int NoJobDirectory<T>(
        CommandContext context, OperatorArguments arguments, string job, Func<T> empty, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        if (arguments.Has("--json"))
        {
            context.WriteJson(empty(), type);
        }
        else
        {
            context.Output.WriteLine($"No checkpoints: the job directory {OperatorText.Quote(job)} does not exist (check --namespace and --job).");
        }

        return Success;
    }

    /// <summary>How the flush checked the files: read back, or on the write-side hash only (resume hashes those); null for manifests without it.</summary>
    private static string? Verification(IEnumerable<ManifestFile> files)
    {
        var known = files.Where(f => f.Verification is not null).ToList();
        if (known.Count == 0)
        {
            return null;
        }

        var readBack = known.Where(f => f.Verification == ManifestFile.ReadBack).ToList();
        var writeHash = known.Where(f => f.Verification == ManifestFile.WriteHash).ToList();
        var text = $"{readBack.Count} file(s), {OperatorText.Bytes(readBack.Sum(f => f.Size))}, read back; "
            + $"{writeHash.Count} file(s), {OperatorText.Bytes(writeHash.Sum(f => f.Size))}, on the write-side hash and fsync only (resume hashes them)";
        var other = known.Count - readBack.Count - writeHash.Count;
        return other > 0 ? text + $"; {other} file(s) by a check this sidecar does not know" : text;
    }

    private static string Timings(ManifestTimings t) =>
        $"notify {OperatorText.Seconds(t.NotifySeconds)}, dump {OperatorText.Seconds(t.DumpSeconds)}, copy {OperatorText.Seconds(t.CopySeconds)}, "
        + $"verify {OperatorText.Seconds(t.VerifySeconds)} of {t.BudgetSeconds:0.#} s";
}
