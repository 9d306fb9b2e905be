using System.Runtime.InteropServices;
using Checkpoint.Sidecar.Storage;

namespace Checkpoint.Sidecar.Tests.Storage;

/// <summary>
/// O_DIRECTORY, O_NOFOLLOW and O_DIRECT differ between x86-64 and arm64 (asm/fcntl.h); the image is
/// built for both, and an x86-64 value on arm64 means another flag entirely.
/// </summary>
public sealed class NativeFileFlagsTests
{
    [Fact]
    public void OpenFlagsFor_X64_AreTheX8664HeaderValues()
    {
        // asm/fcntl.h (asm-generic): O_DIRECTORY 0200000, O_NOFOLLOW 0400000, O_DIRECT 040000.
        Assert.Equal(new NativeFile.OpenFlags(Directory: 0x10000, NoFollow: 0x20000, Direct: 0x4000), NativeFile.OpenFlagsFor(Architecture.X64));
    }

    [Fact]
    public void OpenFlagsFor_Arm64_AreTheArm64HeaderValues()
    {
        // arch/arm64/include/uapi/asm/fcntl.h: O_DIRECTORY 040000, O_NOFOLLOW 0100000, O_DIRECT 0200000.
        Assert.Equal(new NativeFile.OpenFlags(Directory: 0x4000, NoFollow: 0x8000, Direct: 0x10000), NativeFile.OpenFlagsFor(Architecture.Arm64));
    }

    [Fact]
    public void OpenFlagsFor_RunningArchitecture_MatchesTheHeaders()
    {
        var expected = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => new NativeFile.OpenFlags(0x10000, 0x20000, 0x4000),
            Architecture.Arm64 => new NativeFile.OpenFlags(0x4000, 0x8000, 0x10000),
            var other => throw new InvalidOperationException($"no header values known for {other}"),
        };

        Assert.Equal(expected, NativeFile.OpenFlagsFor(RuntimeInformation.ProcessArchitecture));
    }

    [Fact]
    public void OpenWithoutSymlinks_RegularFileAsDirectory_IsRefusedByTheKernel()
    {
        // The kernel's own word on O_DIRECTORY: a wrong value (O_DIRECT on arm64) would open the file.
        using var temp = new TempDirectory();
        var directory = temp.CreateDirectory("d");
        File.WriteAllText(Path.Combine(directory, "file"), "x");
        using var handle = NativeFile.OpenDirectory(directory);

        var error = Assert.ThrowsAny<IOException>(() => NativeFile.OpenWithoutSymlinks(handle, "file", expectDirectory: true, out _, out _).Dispose());

        Assert.Equal(20 /* ENOTDIR */, error.HResult);
    }
}
