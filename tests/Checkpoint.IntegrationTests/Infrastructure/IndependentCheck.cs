using System.Diagnostics;
using System.Text.Json;

namespace Checkpoint.IntegrationTests.Infrastructure;

/// <summary>
/// Checks a committed checkpoint without the sidecar's code: the manifest is read as plain JSON and
/// every file is hashed by the xxhsum tool (Debian package xxhash).
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

    public static JsonDocument Manifest(string checkpointDirectory) =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(checkpointDirectory, "manifest.json")));

    public static string? Latest(string jobDirectory)
    {
        var path = Path.Combine(jobDirectory, "LATEST");
        return File.Exists(path) ? File.ReadAllText(path).Trim() : null;
    }

    /// <summary>Asserts every file listed in the manifest exists with its size and xxh128, as xxhsum computes it.</summary>
    public static void AssertVerifies(string checkpointDirectory)
    {
        using var manifest = Manifest(checkpointDirectory);
        var files = manifest.RootElement.GetProperty("files").EnumerateArray().ToList();
        Assert.NotEmpty(files);
        foreach (var file in files)
        {
            var path = Path.Combine(checkpointDirectory, file.GetProperty("path").GetString()!);
            Assert.True(File.Exists(path), $"{path} listed in the manifest is missing");
            Assert.Equal(file.GetProperty("size").GetInt64(), new FileInfo(path).Length);
            Assert.Equal(file.GetProperty("xxh128").GetString(), Xxh128(path));
        }
    }

    public static IReadOnlyList<string> PartialDirectories(string jobDirectory) =>
        Directory.Exists(jobDirectory)
            ? Directory.GetDirectories(jobDirectory).Where(d => d.EndsWith(".partial", StringComparison.Ordinal)).ToList()
            : [];
}
