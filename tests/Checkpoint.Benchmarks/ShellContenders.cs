using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Checkpoint.Benchmarks;

/// <summary>The baselines and floors, run by bash: `cp -r` + `sync`, and dd at O_DIRECT.</summary>
internal static class ShellContenders
{
    /// <summary>What a platform team scripts: copy the directory, then sync (copy_file_range: no byte enters user space).</summary>
    public static string CopySync(string source, string destination) => $"cp -r '{source}' '{destination}' && sync";

    /// <summary>
    /// The physical floor of a flush: the same bytes written with `dd oflag=direct conv=fsync bs=4M` into
    /// <paramref name="destination"/>, in <paramref name="streams"/> concurrent streams (one dd per file, or per
    /// range of a file when there are fewer files than streams), so the floor is the disk's and not one
    /// stream's. The source is read from the page cache when the staging is warm, and with O_DIRECT
    /// (`iflag=direct`: measured faster here than buffered reads for 4 streams of a cold 2 GiB file) when it
    /// is cold. With <paramref name="readBack"/> the floor of a read-back flush: the same write while the same
    /// number of streams read an equal amount with O_DIRECT from files already on disk (the staged files
    /// themselves: O_DIRECT never reads the page cache), which for cold staging is exactly the sidecar's
    /// work: read the source, write it, read it back.
    /// </summary>
    public static string Floor(IReadOnlyList<string> sources, Shape shape, Staging staging, string destination, int streams, bool readBack)
    {
        var input = staging == Staging.Cold ? " iflag=direct" : "";
        var blocks = shape.FileMiB / 4;
        var rangesPerFile = Math.Min(blocks, Math.Max(1, (streams + shape.Files - 1) / shape.Files));
        var rangeBlocks = (blocks + rangesPerFile - 1) / rangesPerFile;
        var jobs = new List<(string Source, string Name, int Skip, int Count)>();
        foreach (var source in sources)
        {
            for (var skip = 0; skip < blocks; skip += rangeBlocks)
            {
                jobs.Add((source, Path.GetFileName(source), skip, Math.Min(rangeBlocks, blocks - skip)));
            }
        }

        var script = new StringBuilder($"set -e; mkdir -p '{destination}'; pids=();");
        for (var stream = 0; stream < Math.Min(streams, jobs.Count); stream++)
        {
            var mine = jobs.Where((_, i) => i % streams == stream).ToList();
            script.Append(" ( ")
                .AppendJoin(" && ", mine.Select(j => string.Create(CultureInfo.InvariantCulture,
                    $"dd if='{j.Source}' of='{destination}/{j.Name}' bs=4M skip={j.Skip} seek={j.Skip} count={j.Count}{input} oflag=direct conv=notrunc,fsync status=none")))
                .Append(" ) & pids+=($!);");
            if (readBack)
            {
                script.Append(" ( ")
                    .AppendJoin(" && ", mine.Select(j => string.Create(CultureInfo.InvariantCulture,
                        $"dd if='{j.Source}' of=/dev/null bs=4M skip={j.Skip} count={j.Count} iflag=direct status=none")))
                    .Append(" ) & pids+=($!);");
            }
        }

        script.Append(" for p in \"${pids[@]}\"; do wait \"$p\"; done");
        return script.ToString();
    }

    /// <summary>Runs a script; CPU is that of bash and everything it ran (getrusage of reaped children).</summary>
    public static async Task<Measurement> RunAsync(string script)
    {
        var cpuBefore = Native.ReapedChildrenCpuSeconds();
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(new ProcessStartInfo("bash", ["-c", script])) ?? throw new InvalidOperationException("bash did not start");
        await process.WaitForExitAsync();
        var elapsed = clock.Elapsed.TotalSeconds;
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{script}' exited with {process.ExitCode}");
        }

        return new Measurement(elapsed, Native.ReapedChildrenCpuSeconds() - cpuBefore);
    }
}
