using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Checkpoint.IntegrationTests.Infrastructure;

/// <summary>
/// Checks a committed checkpoint without the sidecar's code, from the published layout (README):
/// a job-wide checkpoint is <c>&lt;job&gt;/step-N/</c>, committed once its job manifest
/// (<c>step-N/manifest.json</c>) exists; the manifest is read as plain JSON and every file of every
/// shard (under <c>step-N/&lt;shard.directory&gt;/</c>) is hashed by the xxhsum tool (Debian package xxhash).
/// </summary>
internal static class IndependentCheck
{
    public static string Xxh128(string path)
    {
        var info = new ProcessStartInfo("xxhsum") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add("-H2");
        info.ArgumentList.Add(path);
        using var process = Process.Start(info) ?? throw new InvalidOperationException("xxhsum did not start");
        var output = process.StandardOutput.ReadToEnd();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"xxhsum -H2 {path} failed: {error}");
        }

        // "<hex>  <path>"; the BSD-style "XXH128 (path) = hex" is not what -H2 prints by default.
        return output.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
    }

    /// <summary>The name of a step's directory, as the layout defines it: <c>step-</c> and the step in nine digits or more.</summary>
    public static string StepName(long step) => "step-" + step.ToString("D9", CultureInfo.InvariantCulture);

    public static string StepDirectory(string jobDirectory, long step) => Path.Combine(jobDirectory, StepName(step));

    /// <summary>The job manifest of a step: its commit.</summary>
    public static JsonDocument Manifest(string stepDirectory) =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(stepDirectory, "manifest.json")));

    /// <summary>Whether the step has its job manifest, that is, was committed.</summary>
    public static bool IsCommitted(string stepDirectory) => File.Exists(Path.Combine(stepDirectory, "manifest.json"));

    /// <summary>What LATEST names (a step), or null when there is no LATEST; fails when LATEST is not a regular file.</summary>
    public static string? Latest(string jobDirectory)
    {
        var path = Path.Combine(jobDirectory, "LATEST");
        if (!File.Exists(path))
        {
            return null;
        }

        // Opened without blocking: a FIFO (a hostile LATEST left in place) fails the check instead of hanging it.
        using var handle = Posix.OpenForReadingWithoutBlocking(path);
        using var stream = new FileStream(handle, FileAccess.Read, bufferSize: 1);
        Assert.True(stream.CanSeek, $"{path} is not a regular file");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd().Trim();
    }

    /// <summary>The directory under the step that holds <paramref name="rank"/>'s <c>rank-&lt;r&gt;/</c>, as the job manifest names it.</summary>
    public static string ShardDirectory(string stepDirectory, int rank)
    {
        using var manifest = Manifest(stepDirectory);
        var shard = Assert.Single(manifest.RootElement.GetProperty("shards").EnumerateArray(),
            s => s.GetProperty("ranks").EnumerateArray().Any(r => r.GetProperty("rank").GetInt32() == rank));
        return Path.Combine(stepDirectory, shard.GetProperty("directory").GetString()!);
    }

    /// <summary>Every file the job manifest lists, as its path relative to its shard's directory, ordered.</summary>
    public static IReadOnlyList<string> Files(JsonDocument manifest) =>
        manifest.RootElement.GetProperty("shards").EnumerateArray()
            .SelectMany(s => s.GetProperty("files").EnumerateArray().Select(f => f.GetProperty("path").GetString()!))
            .Order(StringComparer.Ordinal)
            .ToList();

    /// <summary>Every rank the job manifest's shards hold, ordered.</summary>
    public static IReadOnlyList<int> Ranks(JsonDocument manifest) =>
        manifest.RootElement.GetProperty("shards").EnumerateArray()
            .SelectMany(s => s.GetProperty("ranks").EnumerateArray().Select(r => r.GetProperty("rank").GetInt32()))
            .Order()
            .ToList();

    /// <summary>
    /// Asserts the step is committed and whole: its job manifest is of format 2 and names this step,
    /// its shards hold every rank of the world exactly once, and every file listed in any shard exists
    /// under <c>step-N/&lt;shard.directory&gt;/</c> with its size and xxh128, as xxhsum computes it.
    /// </summary>
    public static void AssertVerifies(string stepDirectory)
    {
        Assert.True(IsCommitted(stepDirectory), $"{stepDirectory} has no job manifest: it is not committed");
        using var manifest = Manifest(stepDirectory);
        var root = manifest.RootElement;
        var name = Path.GetFileName(stepDirectory);
        Assert.Equal(2, root.GetProperty("formatVersion").GetInt32());
        Assert.Equal(name, root.GetProperty("id").GetString());
        Assert.Equal(name, StepName(root.GetProperty("step").GetInt64()));

        var worldSize = root.GetProperty("worldSize").GetInt32();
        Assert.Equal(Enumerable.Range(0, worldSize), Ranks(manifest));

        var shards = root.GetProperty("shards").EnumerateArray().ToList();
        Assert.NotEmpty(shards);
        var files = 0;
        foreach (var shard in shards)
        {
            var directory = shard.GetProperty("directory").GetString()!;
            Assert.True(directory.Length > 0 && directory != "." && directory != ".." && !directory.Contains('/', StringComparison.Ordinal),
                $"shard directory '{directory}' is not a name beneath the step");
            foreach (var file in shard.GetProperty("files").EnumerateArray())
            {
                var path = Path.Combine(stepDirectory, directory, file.GetProperty("path").GetString()!);
                Assert.True(File.Exists(path), $"{path} listed in the job manifest is missing");
                Assert.Equal(file.GetProperty("size").GetInt64(), new FileInfo(path).Length);
                Assert.Equal(file.GetProperty("xxh128").GetString(), Xxh128(path));
                files++;
            }
        }

        Assert.True(files > 0, $"the job manifest of {stepDirectory} lists no file");
    }

    /// <summary>Step directories without a job manifest: a flush that failed or is under way; never resumed from.</summary>
    public static IReadOnlyList<string> UncommittedSteps(string jobDirectory) =>
        Directory.Exists(jobDirectory)
            ? Directory.GetDirectories(jobDirectory, "step-*")
                .Where(d => !d.EndsWith(".deleting", StringComparison.Ordinal) && !IsCommitted(d))
                .Order(StringComparer.Ordinal)
                .ToList()
            : [];

    /// <summary>Sealed shard manifests in a step (<c>shards/*.json</c>).</summary>
    public static IReadOnlyList<string> SealedShards(string stepDirectory)
    {
        var shards = Path.Combine(stepDirectory, "shards");
        return Directory.Exists(shards) ? Directory.GetFiles(shards, "*.json").Where(f => !Path.GetFileName(f).StartsWith('.')).ToList() : [];
    }
}
