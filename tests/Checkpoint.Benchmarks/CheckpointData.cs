using System.Buffers.Binary;

namespace Checkpoint.Benchmarks;

/// <summary>Checkpoint-like files: incompressible, different each run, written and fsynced before timing starts.</summary>
internal static class CheckpointData
{
    public static IReadOnlyList<string> Write(string directory, BenchmarkOptions options, int run)
    {
        Directory.CreateDirectory(directory);
        var paths = new List<string>();
        var block = new byte[4 << 20];
        for (var file = 0; file < options.Files; file++)
        {
            var path = Path.Combine(directory, $"shard-{file:D2}.bin");
            var state = (ulong)(run * 1000 + file + 1) * 0x9E3779B97F4A7C15UL;
            using (var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.None))
            {
                for (long written = 0; written < (long)options.FileMiB << 20; written += block.Length)
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
}
