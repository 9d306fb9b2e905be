namespace Checkpoint.Samples.SampleTrainer;

/// <summary>
/// SplitMix64, written out so training data never depends on the runtime's <see cref="Random"/> implementation, which may
/// change between .NET versions and would break bit-identical resume across them.
/// </summary>
internal struct SplitMix64(ulong seed)
{
    private const ulong GoldenGamma = 0x9E3779B97F4A7C15UL;

    private ulong state = seed;

    /// <summary>An independent stream for one (seed, index) pair, so step k's data needs nothing from steps before it.</summary>
    public static SplitMix64 ForIndex(ulong seed, long index)
    {
        var mixer = new SplitMix64(seed ^ (unchecked((ulong)index) * GoldenGamma));
        return new SplitMix64(mixer.NextUInt64());
    }

    public ulong NextUInt64()
    {
        ulong z = state += GoldenGamma;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [-1, 1), from the top 53 bits so every value is exactly representable.</summary>
    public double NextSignedUnit() => ((NextUInt64() >> 11) * (1.0 / (1UL << 53)) * 2.0) - 1.0;
}
