using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Checkpoint.IntegrationTests.Infrastructure;

/// <summary>
/// The storage under test mounted through tests/faultfs (a FUSE passthrough filesystem) so a test can
/// stall, fail or corrupt chosen operations of the real sidecar. See tests/faultfs/README.md.
/// </summary>
internal sealed class FaultFs : IAsyncDisposable
{
    private readonly ObservedProcess _process;

    private FaultFs(ObservedProcess process, string backing, string mountPoint, string control)
    {
        _process = process;
        Backing = backing;
        MountPoint = mountPoint;
        Control = control;
    }

    /// <summary>The real directory holding the bytes; reading it bypasses every fault.</summary>
    public string Backing { get; }

    /// <summary>Where the sidecar is pointed.</summary>
    public string MountPoint { get; }

    public string Control { get; }

    /// <param name="keepCache">
    /// Keep the kernel's cached pages across opens, as an NFS client does while a file's attributes
    /// are unchanged: a read then reaches storage only after an explicit cache drop.
    /// </param>
    /// <param name="name">Names the mount point under <paramref name="root"/> (and its backing and control directories), so a test can mount more than one.</param>
    /// <param name="cacheSeconds">
    /// How long the kernel trusts cached attributes and entries (not negative lookups, see
    /// tests/faultfs/README.md): two mounts of one backing directory then see each other's changes only
    /// as two NFS clients do.
    /// </param>
    /// <param name="backing">Shares another mount's backing directory (a second NFS client of the same export).</param>
    public static async Task<FaultFs> MountAsync(string root, bool keepCache = false, string name = "nfs", double cacheSeconds = 0, string? backing = null)
    {
        backing ??= Path.Combine(root, $"{name}-backing");
        var mountPoint = Path.Combine(root, name);
        var control = Path.Combine(root, name == "nfs" ? "faultfs-control" : $"{name}-faultfs-control");
        Directory.CreateDirectory(backing);
        Directory.CreateDirectory(mountPoint);
        Directory.CreateDirectory(control);
        List<string> arguments = [RepoPaths.FaultFsScript, backing, mountPoint, "--control", control];
        if (keepCache)
        {
            arguments.Add("--keep-cache");
        }

        if (cacheSeconds > 0)
        {
            arguments.AddRange(["--attr-timeout", cacheSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture), "--negative-timeout", "0"]);
        }

        var process = ObservedProcess.Start("faultfs", "/usr/bin/python3", arguments, new Dictionary<string, string>());
        var faultFs = new FaultFs(process, backing, mountPoint, control);
        await process.WaitForLineAsync("^mounted ").ConfigureAwait(false);
        return faultFs;
    }

    /// <summary>Replaces the rule set atomically (written aside, then renamed, as the README asks).</summary>
    public void SetRules(params FaultRule[] rules)
    {
        var array = new JsonArray();
        foreach (var rule in rules)
        {
            var node = new JsonObject
            {
                ["name"] = rule.Name,
                ["op"] = rule.Op,
                ["path_glob"] = rule.PathGlob,
                ["action"] = rule.Action,
                ["once"] = rule.Once,
            };
            if (rule.AfterBytes is { } after)
            {
                node["after_bytes"] = after;
            }

            if (rule.Offset is { } offset)
            {
                node["offset"] = offset;
            }

            if (rule.Errno is { } errno)
            {
                node["errno"] = errno;
            }

            array.Add(node);
        }

        var temp = Path.Combine(Control, "rules.json.tmp");
        File.WriteAllText(temp, array.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.Move(temp, Path.Combine(Control, "rules.json"), overwrite: true);
    }

    /// <summary>Waits for the marker faultfs creates when a rule fires (for a stall: before it blocks).</summary>
    public async Task WaitForTriggerAsync(string ruleName, TimeSpan? timeout = null)
    {
        var triggered = Path.Combine(Control, "triggered");
        Directory.CreateDirectory(triggered);
        var marker = Path.Combine(triggered, ruleName);
        var created = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var watcher = new FileSystemWatcher(triggered) { EnableRaisingEvents = true };
        watcher.Created += (_, e) =>
        {
            if (e.Name == ruleName)
            {
                created.TrySetResult();
            }
        };
        // The event may have fired before the watcher started.
        if (File.Exists(marker))
        {
            return;
        }

        var limit = timeout ?? ObservedProcess.DefaultTimeout;
        try
        {
            await created.Task.WaitAsync(limit).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            var events = Path.Combine(Control, "events.log");
            throw new TimeoutException($"faultfs rule '{ruleName}' did not fire within {limit}; events: " +
                (File.Exists(events) ? File.ReadAllText(events) : "(none)"));
        }
    }

    public void ReleaseAll()
    {
        Directory.CreateDirectory(Path.Combine(Control, "release"));
        File.WriteAllText(Path.Combine(Control, "release", "all"), "");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            // faultfs releases its stalls and unmounts on SIGTERM.
            _process.Signal(Posix.SigTerm);
            await _process.WaitForExitAsync(TimeSpan.FromSeconds(20)).ConfigureAwait(false);
        }

        await _process.DisposeAsync().ConfigureAwait(false);
    }
}

/// <param name="Op">write, read, fsync, rename, create, mkdir, ... (tests/faultfs/README.md).</param>
/// <param name="PathGlob">fnmatch on the path below the mount root; '*' also matches '/'.</param>
/// <param name="Action">stall, eio, errno, flip_bit, delay.</param>
/// <param name="Errno">For the errno action: its name, e.g. EROFS or ENOSPC.</param>
internal sealed record FaultRule(string Name, string Op, string PathGlob, string Action, bool Once = true, long? AfterBytes = null, long? Offset = null, string? Errno = null)
{
    public static string SafeName(string text) => Regex.Replace(text, "[^A-Za-z0-9_.-]", "-");
}
