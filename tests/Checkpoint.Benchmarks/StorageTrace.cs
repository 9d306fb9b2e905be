using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Checkpoint.Benchmarks;

/// <summary>
/// Counts what one sidecar did to the job's directory on storage, from strace's output
/// (<c>-f -y -ttt</c>, the calls of <see cref="SimulatedPod.TracedCalls"/>): every call whose path, or
/// whose descriptor's path, lies in the job directory, between two instants.
/// </summary>
internal static partial class StorageTrace
{
    public static readonly string[] Categories = ["open", "stat", "readdir", "change", "fsync", "other"];

    public static TraceCounts Count(string traceFile, string jobDirectory, DateTimeOffset from, DateTimeOffset to)
    {
        var counts = new TraceCounts();
        var fromSeconds = from.ToUnixTimeMilliseconds() / 1000.0;
        var toSeconds = to.ToUnixTimeMilliseconds() / 1000.0;
        foreach (var line in File.ReadLines(traceFile))
        {
            var call = CallLine().Match(line);
            if (!call.Success || !line.Contains(jobDirectory, StringComparison.Ordinal))
            {
                continue;
            }

            var at = double.Parse(call.Groups["at"].Value, CultureInfo.InvariantCulture);
            if (at < fromSeconds || at > toSeconds)
            {
                continue;
            }

            var name = call.Groups["name"].Value;
            counts.Add(Category(name));
            if (ShardsListing().IsMatch(line))
            {
                counts.ShardListings++;
            }
            else if (ShardManifestOpen().IsMatch(line))
            {
                counts.ShardManifestReads++;
            }
        }

        return counts;
    }

    private static string Category(string call) => call switch
    {
        "open" or "openat" or "openat2" or "creat" => "open",
        "stat" or "lstat" or "fstat" or "newfstatat" or "statx" or "access" or "faccessat" or "faccessat2"
            or "readlink" or "readlinkat" or "statfs" or "fstatfs" => "stat",
        "getdents64" or "getdents" => "readdir",
        "mkdir" or "mkdirat" or "rename" or "renameat" or "renameat2" or "link" or "linkat" or "unlink" or "unlinkat" or "rmdir"
            or "symlink" or "symlinkat" or "utimensat" or "chmod" or "fchmodat" or "chown" or "fchownat" or "truncate" => "change",
        "fsync" or "fdatasync" => "fsync",
        _ => "other",
    };

    // "1234 1764500000.123456 openat(...": pid, time, call (also a call strace shows as unfinished).
    [GeneratedRegex(@"^\d+\s+(?<at>\d+\.\d+)\s+(?<name>[a-z_0-9]+)\(")]
    private static partial Regex CallLine();

    // The sidecar's directory listing: a fresh descriptor of shards/ opened as ".", then readdir.
    [GeneratedRegex(@"openat\(\d+<[^>]*/step-\d+/shards>, ""\.""")]
    private static partial Regex ShardsListing();

    // Opening a sealed shard manifest to read it (its own is written through a temp file and never read).
    [GeneratedRegex(@"openat2?\(\d+<[^>]*/step-\d+/shards>, ""[^""/]+\.json""")]
    private static partial Regex ShardManifestOpen();
}

internal sealed class TraceCounts
{
    public Dictionary<string, long> ByCategory { get; } = StorageTrace.Categories.ToDictionary(c => c, _ => 0L);

    public long Total => ByCategory.Values.Sum();

    /// <summary>Listings of a step's shards/ directory (the publish poll; retention's listings are not counted here).</summary>
    public long ShardListings { get; set; }

    /// <summary>Other pods' shard manifests opened (to build the job manifest).</summary>
    public long ShardManifestReads { get; set; }

    public void Add(string category) => ByCategory[category]++;
}

/// <summary>File times the kernel keeps, with its resolution.</summary>
internal static partial class FileTimes
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxCtime = 0x80;
    private const int CtimeOffset = 96;

    /// <summary>
    /// When the entry last changed (ctime): for a manifest, the rename into shards/ or the link to
    /// manifest.json (and the temp name's removal right after), so when other pods could first see it.
    /// </summary>
    public static DateTimeOffset Changed(string path)
    {
        var buffer = new byte[256];
        if (statx(AtFdCwd, path, AtSymlinkNoFollow, StatxCtime, buffer) != 0)
        {
            throw new IOException($"statx '{path}' failed: errno {Marshal.GetLastPInvokeError()}");
        }

        var seconds = BitConverter.ToInt64(buffer, CtimeOffset);
        var nanoseconds = BitConverter.ToUInt32(buffer, CtimeOffset + 8);
        return DateTimeOffset.FromUnixTimeSeconds(seconds).AddTicks(nanoseconds / 100);
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx(int directory, string path, int flags, uint mask, [Out] byte[] buffer);
}
