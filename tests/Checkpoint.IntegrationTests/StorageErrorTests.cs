using System.Diagnostics;
using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// A storage failure reaches people as a sentence naming the file and the cause, never as the resource
/// key the AOT build leaves of .NET's own message (IO_DiskFull_Path_AllocationSize, ...).
/// </summary>
public sealed class StorageErrorTests
{
    private const string DiskFullSentence =
        "Writing 'rank-0/model.bin' to the checkpoint storage failed: no space is left on the device (ENOSPC)";

    [Fact]
    public async Task WriteFailsWithEnospc_FlushFails_ErrorIsASentenceNamingTheFile()
    {
        using var dirs = new TestDirectories();
        await using var faultFs = await FaultFs.MountAsync(dirs.Root);
        await using var sidecar = await SidecarProcess.StartAsync(dirs, storage: faultFs.MountPoint);
        await using var client = await sidecar.ConnectAsync();
        faultFs.SetRules(new FaultRule("disk-full", "write", "*/step-*/*_*/rank-0/model.bin", "errno", Once: false, Errno: "ENOSPC"));

        var outcome = await TrainerFiles.CheckpointAsync(client, 10, 0, ("model.bin", 1 << 20));

        Assert.Equal(CheckpointStatus.Failed, outcome.Status);
        Assert.Equal(DiskFullSentence, outcome.Error);
        await sidecar.Process.WaitForLineAsync($"failed \\(storage_error\\): {System.Text.RegularExpressions.Regex.Escape(DiskFullSentence)}");
        Assert.DoesNotContain(sidecar.Process.Lines, line => line.Contains("IO_", StringComparison.Ordinal));
    }

    /// <remarks>
    /// A real full file system: the sidecar reserves each file's blocks before copying, and that is
    /// where a full disk shows first (.NET's preallocation reports it without the errno).
    /// </remarks>
    [Fact]
    public async Task StorageTooSmallForTheFile_FlushFails_ErrorIsASentenceNamingTheFile()
    {
        using var dirs = new TestDirectories();
        await using var small = await SmallFileSystem.MountAsync(Path.Combine(dirs.Root, "small-nfs"), sizeKiB: 512);
        await using var sidecar = await SidecarProcess.StartAsync(dirs, storage: small.MountPoint);
        await using var client = await sidecar.ConnectAsync();

        var outcome = await TrainerFiles.CheckpointAsync(client, 10, 0, ("model.bin", 1 << 20));

        Assert.Equal(CheckpointStatus.Failed, outcome.Status);
        Assert.Equal(DiskFullSentence, outcome.Error);
    }

    /// <summary>A tmpfs of a few hundred KiB: a file system that really runs out of space.</summary>
    private sealed class SmallFileSystem : IAsyncDisposable
    {
        private SmallFileSystem(string mountPoint) => MountPoint = mountPoint;

        public string MountPoint { get; }

        public static async Task<SmallFileSystem> MountAsync(string mountPoint, int sizeKiB)
        {
            Directory.CreateDirectory(mountPoint);
            await RunAsync("mount", "-t", "tmpfs", "-o", $"size={sizeKiB}k", "tmpfs", mountPoint);
            return new SmallFileSystem(mountPoint);
        }

        public async ValueTask DisposeAsync() => await RunAsync("umount", "--lazy", MountPoint);

        private static async Task RunAsync(string command, params string[] arguments)
        {
            using var process = Process.Start(new ProcessStartInfo(command, arguments) { RedirectStandardError = true })!;
            var error = await process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync().WaitAsync(ObservedProcess.DefaultTimeout);
            Assert.True(process.ExitCode == 0, $"{command} {string.Join(' ', arguments)} failed: {error}");
        }
    }
}
