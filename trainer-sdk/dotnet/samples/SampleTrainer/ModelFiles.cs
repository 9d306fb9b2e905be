using System.Text.Json;
using Checkpoint.TrainerSdk;

namespace Checkpoint.Samples.SampleTrainer;

/// <summary>
/// The sample's checkpoint layout inside a rank's folder: <c>model.bin</c> (the parameters as raw little-endian doubles),
/// <c>state.json</c> (the step and what is needed to check the files belong to this model), and optionally
/// <c>payload.bin</c>, opaque bytes that only make the checkpoint bigger.
/// </summary>
internal static class ModelFiles
{
    private const string ModelFile = "model.bin";
    private const string StateFile = "state.json";
    private const string PayloadFile = "payload.bin";
    private const int FormatVersion = 1;
    private const int PayloadChunkBytes = 1 << 20;

    /// <summary>Writes the rank's files under the checkpoint's staging directory and returns them relative to it.</summary>
    public static List<string> Write(DumpRequest dump, int rank, LinearRegression model, long payloadBytes)
    {
        string directory = dump.RankDirectory(rank);
        Directory.CreateDirectory(directory);

        WriteDurably(Path.Combine(directory, ModelFile), stream => stream.Write(model.ParameterBytes()));
        WriteDurably(Path.Combine(directory, StateFile), stream =>
        {
            using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            json.WriteStartObject();
            json.WriteNumber("format", FormatVersion);
            json.WriteNumber("step", model.Step);
            json.WriteNumber("rank", rank);
            json.WriteNumber("parameters", LinearRegression.ParameterCount);
            json.WriteNumber("seed", LinearRegression.Seed);
            json.WriteEndObject();
        });

        var files = new List<string> { CheckpointLayout.RankFile(rank, ModelFile), CheckpointLayout.RankFile(rank, StateFile) };
        if (payloadBytes > 0)
        {
            WriteDurably(Path.Combine(directory, PayloadFile), stream => WritePayload(stream, rank, model.Step, payloadBytes));
            files.Add(CheckpointLayout.RankFile(rank, PayloadFile));
        }

        return files;
    }

    /// <summary>Loads the rank's parameters and step from a committed checkpoint into <paramref name="model"/>.</summary>
    public static void Load(LatestCheckpoint checkpoint, int rank, LinearRegression model)
    {
        string directory = checkpoint.RankDirectory(rank);
        long step;
        using (var state = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(directory, StateFile))))
        {
            var root = state.RootElement;
            int format = root.GetProperty("format").GetInt32();
            if (format != FormatVersion)
            {
                throw new InvalidDataException($"{StateFile} has format {format}; this trainer reads format {FormatVersion}");
            }

            int parameters = root.GetProperty("parameters").GetInt32();
            if (parameters != LinearRegression.ParameterCount)
            {
                throw new InvalidDataException(
                    $"{StateFile} describes {parameters} parameters; this model has {LinearRegression.ParameterCount}");
            }

            step = root.GetProperty("step").GetInt64();
        }

        model.Restore(File.ReadAllBytes(Path.Combine(directory, ModelFile)), step);
    }

    // The sidecar copies the files as soon as they are reported; flushing to disk first means a node crash right after
    // the report cannot leave it copying a torn file.
    private static void WriteDurably(string path, Action<FileStream> write)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        write(stream);
        stream.Flush(flushToDisk: true);
    }

    // Varies with rank and step so that checkpoints are not trivially identical, yet is fully reproducible.
    private static void WritePayload(Stream stream, int rank, long step, long length)
    {
        var generator = SplitMix64.ForIndex(LinearRegression.Seed ^ (ulong)rank, step);
        byte[] chunk = new byte[(int)Math.Min(length, PayloadChunkBytes)];
        for (long written = 0; written < length; written += chunk.Length)
        {
            int count = (int)Math.Min(chunk.Length, length - written);
            for (int i = 0; i < count; i += sizeof(ulong))
            {
                ulong value = generator.NextUInt64();
                for (int b = 0; b < sizeof(ulong) && i + b < count; b++)
                {
                    chunk[i + b] = (byte)(value >> (8 * b));
                }
            }

            stream.Write(chunk, 0, count);
        }
    }
}
