using System.Buffers.Binary;

namespace Checkpoint.Benchmarks;

/// <summary>Checkpoint-like files: incompressible, different per seed, written and fsynced before any timing starts.</summary>
internal static class CheckpointData
{
    public static IReadOnlyList<string> Write(string directory, Shape shape, int seed)
    {
        Directory.CreateDirectory(directory);
        var paths = new List<string>();
        var block = new byte[4 << 20];
        for (var file = 0; file < shape.Files; file++)
        {
            var path = Path.Combine(directory, $"shard-{file:D2}.bin");
            var state = (ulong)(seed * 1000 + file + 1) * 0x9E3779B97F4A7C15UL;
            using (var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.None))
            {
                for (long written = 0; written < shape.FileBytes; written += block.Length)
                {
                    for (var i = 0; i < block.Length; i += 8)
                    {
                        // xorshift64: fast, and defeats any compression or deduplication in the storage path.
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        BinaryPrimitives.WriteUInt64LittleEndian(block.AsSpan(i), state);
                    }

                    stream.Write(block);
                }

                // A trainer's dump is complete before it hands it over; its writeback must not be timed.
                stream.Flush(flushToDisk: true);
            }

            paths.Add(path);
        }

        return paths;
    }

    /// <summary>Warm staging: every page of the files in the page cache, as a trainer that just wrote them leaves them.</summary>
    public static void Warm(IEnumerable<string> paths)
    {
        var buffer = new byte[4 << 20];
        foreach (var path in paths)
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            while (stream.Read(buffer) > 0)
            {
            }
        }
    }

    /// <summary>Cold staging: the files' (clean, fsynced) pages dropped, so a reader reads them from disk.</summary>
    public static void Cool(IEnumerable<string> paths)
    {
        foreach (var path in paths)
        {
            Native.DropFromPageCache(path);
        }
    }
}
