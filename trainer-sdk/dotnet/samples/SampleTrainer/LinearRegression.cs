using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Checkpoint.Samples.SampleTrainer;

/// <summary>
/// Linear regression trained with plain SGD on synthetic data. The whole training state is the parameter vector and the step
/// count, and the batch of step k is generated from (seed, k) alone, so a run resumed from a checkpoint reproduces the
/// uninterrupted run bit for bit. Loops are written out in a fixed order for the same reason: reordering floating-point
/// sums (as vectorised code would) changes the last bits.
/// </summary>
internal sealed class LinearRegression
{
    public const int ParameterCount = 64;
    public const ulong Seed = 0x5EED_C0DE_2024UL;

    private const int BatchSize = 16;
    private const double LearningRate = 0.05;
    private const double NoiseScale = 0.01;

    private readonly double[] targetWeights = new double[ParameterCount];
    private readonly double[] features = new double[ParameterCount];
    private readonly double[] gradient = new double[ParameterCount];

    public LinearRegression()
    {
        // The weights the data is generated from; index -1 keeps them apart from every step's stream.
        var generator = SplitMix64.ForIndex(Seed, -1);
        for (int i = 0; i < ParameterCount; i++)
        {
            targetWeights[i] = generator.NextSignedUnit();
        }
    }

    public double[] Parameters { get; } = new double[ParameterCount];

    /// <summary>Completed SGD steps; step k's batch is the (k)th, counting from 0.</summary>
    public long Step { get; private set; }

    /// <summary>Runs one SGD step on batch <see cref="Step"/> and returns that batch's mean squared error before the update.</summary>
    public double TrainStep()
    {
        var generator = SplitMix64.ForIndex(Seed, Step);
        Array.Clear(gradient);
        double lossSum = 0;
        for (int sample = 0; sample < BatchSize; sample++)
        {
            double target = 0;
            double prediction = 0;
            for (int i = 0; i < ParameterCount; i++)
            {
                features[i] = generator.NextSignedUnit();
                target += targetWeights[i] * features[i];
                prediction += Parameters[i] * features[i];
            }

            target += NoiseScale * generator.NextSignedUnit();
            double error = prediction - target;
            lossSum += error * error;
            for (int i = 0; i < ParameterCount; i++)
            {
                gradient[i] += 2.0 * error * features[i];
            }
        }

        for (int i = 0; i < ParameterCount; i++)
        {
            Parameters[i] -= LearningRate * gradient[i] / BatchSize;
        }

        Step++;
        return lossSum / BatchSize;
    }

    public byte[] ParameterBytes()
    {
        byte[] bytes = new byte[ParameterCount * sizeof(double)];
        for (int i = 0; i < ParameterCount; i++)
        {
            BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(i * sizeof(double)), Parameters[i]);
        }

        return bytes;
    }

    public void Restore(ReadOnlySpan<byte> parameterBytes, long step)
    {
        if (parameterBytes.Length != ParameterCount * sizeof(double))
        {
            throw new InvalidDataException(
                $"expected {ParameterCount * sizeof(double)} bytes of parameters ({ParameterCount} doubles), found {parameterBytes.Length}");
        }

        for (int i = 0; i < ParameterCount; i++)
        {
            Parameters[i] = BinaryPrimitives.ReadDoubleLittleEndian(parameterBytes[(i * sizeof(double))..]);
        }

        Step = step;
    }

    public string ParametersSha256() => Convert.ToHexStringLower(SHA256.HashData(ParameterBytes()));
}
