using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace Checkpoint.Sidecar.Tests;

/// <summary>A directory of real files for one test, removed when the test ends.</summary>
internal sealed class TempDirectory : IDisposable
{
    public const string StagingId = "20261129T024500123Z-periodic-00000000000000aa";

    private readonly List<IDisposable> _handles = [];

    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "sidecar-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public string CreateDirectory(params string[] parts) => Directory.CreateDirectory(Combine(parts)).FullName;

    /// <summary>A checkpoint's staging directory as the sidecar creates and holds it, in <c>staging/</c> here.</summary>
    public StagingDirectory CreateStaging(string checkpointId = StagingId)
    {
        var root = new StagingRoot(CreateDirectory("staging"), NullLogger<StagingRoot>.Instance);
        _handles.Add(root);
        var staging = root.CreateCheckpointDirectory(checkpointId);
        _handles.Add(staging);
        return staging;
    }

    /// <summary>Writes <paramref name="content"/> to <paramref name="relative"/> under <paramref name="root"/>, creating parents.</summary>
    public static string WriteFile(string root, string relative, byte[] content)
    {
        var path = System.IO.Path.Combine(root, relative);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, content);
        return path;
    }

    /// <summary>
    /// Creates <c>\xff-dir/\xfe.bin</c> and <c>caf\xe9.bin</c> (Latin-1, not UTF-8) in <paramref name="directory"/>,
    /// as a trainer may: .NET cannot name such files itself.
    /// </summary>
    public static async Task WriteFilesNamedInLatin1Async(string directory)
    {
        using var bash = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(
            "bash", ["-c", @"cd ""$1"" && mkdir $'\xff-dir' && printf data > $'\xff-dir/\xfe.bin' && printf data > $'caf\xe9.bin'", "bash", directory])
        {
            UseShellExecute = false,
        }) ?? throw new InvalidOperationException("bash did not start");
        await bash.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        if (bash.ExitCode != 0)
        {
            throw new InvalidOperationException($"creating files with Latin-1 names failed with exit code {bash.ExitCode}");
        }
    }

    public static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    public void Dispose()
    {
        foreach (var handle in _handles)
        {
            handle.Dispose();
        }

        try
        {
            // Symlinks inside are removed, never followed.
            Directory.Delete(Path, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
