using Checkpoint.TrainerSdk;

namespace Checkpoint.TestSupport;

/// <summary>Writes deterministic checkpoint files the way a trainer would, for tests that drive the SDK directly.</summary>
public static class TrainerFiles
{
    /// <summary>Writes each (name, size) under rank-&lt;rank&gt;/ and returns the relative paths to report.</summary>
    public static IReadOnlyList<string> Write(DumpRequest dump, int rank, params (string Name, int Size)[] files)
    {
        var relative = new List<string>();
        foreach (var (name, size) in files)
        {
            var path = CheckpointLayout.RankFile(rank, name);
            var full = Path.Combine(dump.StagingDirectory, path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            var bytes = new byte[size];
            new Random(HashCode.Combine(name, size, rank)).NextBytes(bytes);
            File.WriteAllBytes(full, bytes);
            relative.Add(path);
        }

        return relative;
    }

    /// <summary>Asks for a periodic checkpoint, writes the files, reports them and waits for the outcome.</summary>
    public static async Task<CheckpointOutcome> CheckpointAsync(CheckpointClient client, long step, int rank, params (string Name, int Size)[] files)
    {
        var dump = await client.BeginCheckpointAsync(step, CheckpointReason.Periodic);
        var paths = Write(dump, rank, files);
        await client.CompleteDumpAsync(dump, step, paths, new Dictionary<string, string> { ["step"] = step.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        return await client.WaitForCheckpointAsync(dump.CheckpointId);
    }
}
