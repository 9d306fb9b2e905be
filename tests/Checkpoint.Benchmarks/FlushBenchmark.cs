using System.Globalization;
using Checkpoint.TrainerSdk;

namespace Checkpoint.Benchmarks;

internal enum Staging
{
    Warm,
    Cold,
}

internal enum Contender
{
    SidecarReadBack,
    SidecarWriteHash,
    CopySync,
    WriteFloor,
    ReadBackFloor,
}

/// <summary>One timed thing: a contender, the staging it finds, and whether memory was equalised before it.</summary>
internal readonly record struct Slot(Contender Contender, Staging Staging, bool Equalised);

/// <summary>Every run's measurement of every slot of one shape (index = run).</summary>
internal sealed record ShapeResult(Shape Shape, IReadOnlyDictionary<Slot, List<Measurement>> Runs);

/// <summary>
/// Flushes one checkpoint shape through the sidecar (read-back and write-hash verification, one sidecar
/// each) and times `cp -r` + `sync` and the dd floors of both verification modes on the same bytes, in
/// warm and cold staging, each after memory equalisation; the sidecars and `cp` also without it ("as-is",
/// warm staging: what this benchmark measured before). All slots of a run are interleaved, in an order
/// rotated from run to run, so that drift of the machine hits every contender alike.
/// </summary>
internal sealed class FlushBenchmark(string sidecarBinary, string work, BenchmarkOptions options, MemoryEqualiser equaliser)
{
    public static IReadOnlyList<Slot> Slots { get; } =
    [
        .. from staging in new[] { Staging.Warm, Staging.Cold }
           from contender in Enum.GetValues<Contender>()
           select new Slot(contender, staging, Equalised: true),
        new Slot(Contender.SidecarReadBack, Staging.Warm, Equalised: false),
        new Slot(Contender.SidecarWriteHash, Staging.Warm, Equalised: false),
        new Slot(Contender.CopySync, Staging.Warm, Equalised: false),
    ];

    /// <param name="whileStaged">Called with the staged files after the runs, before they are deleted.</param>
    public async Task<ShapeResult> RunAsync(Shape shape, int seed, Func<IReadOnlyList<string>, Task>? whileStaged = null)
    {
        var root = Path.Combine(work, "shape-" + shape);
        var destination = Path.Combine(root, "dest");
        var runs = Slots.ToDictionary(s => s, _ => new List<Measurement>());
        try
        {
            var staged = CheckpointData.Write(Path.Combine(root, "staged"), shape, seed);
            // The two sidecars (and their last checkpoints) are gone before whileStaged runs: disk for the 8 GiB shapes.
            await using (var readBack = await SidecarTarget.StartAsync(sidecarBinary, Path.Combine(root, "sidecar-read-back"), "read-back"))
            await using (var writeHash = await SidecarTarget.StartAsync(sidecarBinary, Path.Combine(root, "sidecar-write-hash"), "write-hash"))
            {
                var runCount = shape.Runs ?? options.Runs;
                for (var run = 0; run < runCount; run++)
                {
                    var shift = run * ((Slots.Count + runCount - 1) / runCount);
                    var line = new List<string>();
                    foreach (var slot in Slots.Skip(shift % Slots.Count).Concat(Slots.Take(shift % Slots.Count)))
                    {
                        if (slot.Staging == Staging.Warm)
                        {
                            CheckpointData.Warm(staged);
                        }
                        else
                        {
                            CheckpointData.Cool(staged);
                        }

                        if (slot.Equalised)
                        {
                            await equaliser.EqualiseAsync();
                        }

                        var measurement = slot.Contender switch
                        {
                            Contender.SidecarReadBack => await FlushAsync(readBack, staged, slot, "read-back"),
                            Contender.SidecarWriteHash => await FlushAsync(writeHash, staged, slot, "write-hash"),
                            Contender.CopySync => await ShellContenders.RunAsync(ShellContenders.CopySync(Path.GetDirectoryName(staged[0])!, destination)),
                            Contender.WriteFloor => await ShellContenders.RunAsync(ShellContenders.Floor(staged, shape, slot.Staging, destination, options.FloorStreams, readBack: false)),
                            Contender.ReadBackFloor => await ShellContenders.RunAsync(ShellContenders.Floor(staged, shape, slot.Staging, destination, options.FloorStreams, readBack: true)),
                            _ => throw new InvalidOperationException(slot.Contender.ToString()),
                        };
                        Delete(destination);
                        runs[slot].Add(measurement);
                        line.Add(string.Create(CultureInfo.InvariantCulture, $"{Name(slot)} {measurement.Seconds:F2}"));
                    }

                    Console.WriteLine($"  {shape} run {run + 1}: " + string.Join(", ", line));
                }
            }

            if (whileStaged is not null)
            {
                await whileStaged(staged);
            }
        }
        finally
        {
            Delete(root);
        }

        return new ShapeResult(shape, runs);
    }

    /// <summary>A manual flush (full speed, like a preemption's, without a deadline that could change the verification).</summary>
    private static async Task<Measurement> FlushAsync(SidecarTarget sidecar, IReadOnlyList<string> staged, Slot slot, string expected)
    {
        var (measurement, outcome) = await sidecar.FlushAsync(staged, CheckpointReason.Manual);
        var verifications = SidecarTarget.Verifications(outcome.Directory);
        if (verifications.Keys.Any(k => k != expected && k != "unrecorded"))
        {
            Console.WriteLine($"  note: {Name(slot)} committed files verified as " + string.Join(", ", verifications.Select(v => $"{v.Key} {v.Value}")));
        }

        return measurement;
    }

    public static string Name(Slot slot) =>
        Name(slot.Contender) + " " + (slot.Staging == Staging.Warm ? "warm" : "cold") + (slot.Equalised ? "" : " as-is");

    public static string Name(Contender contender) => contender switch
    {
        Contender.SidecarReadBack => "sidecar read-back",
        Contender.SidecarWriteHash => "sidecar write-hash",
        Contender.CopySync => "cp -r + sync",
        Contender.WriteFloor => "floor: dd write",
        Contender.ReadBackFloor => "floor: dd write + read",
        _ => contender.ToString(),
    };

    /// <summary>The floor a contender is held against: the read-back floor for a read-back flush, the write floor otherwise.</summary>
    public static Contender FloorOf(Contender contender) =>
        contender is Contender.SidecarReadBack or Contender.ReadBackFloor ? Contender.ReadBackFloor : Contender.WriteFloor;

    public static void Delete(string path)
    {
        if (Directory.Exists(path))
        {
            Directory.Delete(path, recursive: true);
        }
    }
}
