using Checkpoint.Sidecar.Storage;

namespace Checkpoint.Sidecar.Tests.Storage;

public sealed class StorageErrorsTests
{
    [Theory]
    [InlineData(28, "no space is left on the device (ENOSPC)")]
    [InlineData(122, "the disk quota is used up (EDQUOT)")]
    [InlineData(5, "the device reported an I/O error (EIO)")]
    [InlineData(30, "the file system is mounted read-only (EROFS)")]
    [InlineData(13, "permission was denied (EACCES)")]
    [InlineData(36, "the path is too long (ENAMETOOLONG)")]
    public void Reason_ErrnoInHResult_NamesTheCause(int errno, string expected)
    {
        // How .NET reports the errors it has no special type for: the raw errno in HResult.
        var exception = new IOException("No space left on device : '/x'", errno);

        Assert.Equal(expected, StorageErrors.Reason(exception));
    }

    [Fact]
    public void Reason_MessageStrippedToAResourceKey_NeverShowsTheKey()
    {
        // What the AOT build (UseSystemResourceKeys) leaves of .NET's message for a failed preallocation.
        var exception = new IOException("IO_DiskFull_Path_AllocationSize, /storage/x.partial/rank-0/model.bin, 1048576");

        var reason = StorageErrors.Reason(exception);

        Assert.DoesNotContain("IO_", reason, StringComparison.Ordinal);
        Assert.Equal("the system reported an I/O error without an error number", reason);
    }

    [Fact]
    public void Reason_AccessDeniedWithErrnoInside_NamesTheErrno()
    {
        // .NET's UnauthorizedAccessException for EPERM carries the errno in its inner exception only.
        var exception = new UnauthorizedAccessException("UnauthorizedAccess_IODenied_Path, /x", new IOException("Operation not permitted", 1));

        Assert.Equal("the operation is not permitted (EPERM)", StorageErrors.Reason(exception));
    }

    [Fact]
    public void Reason_FileNotFound_SaysItDoesNotExist()
    {
        Assert.Equal("the file or a directory on its path does not exist (ENOENT)",
            StorageErrors.Reason(new FileNotFoundException("IO_FileNotFound_FileName, /x")));
    }

    [Fact]
    public void Failed_WhatWasBeingDone_IsOneSentenceNamingTheFileAndKeepingTheErrno()
    {
        var failure = StorageErrors.Failed($"writing {UserText.Quote("rank-0/model.bin")} to the checkpoint storage", new IOException("x", 28));

        Assert.Equal("Writing 'rank-0/model.bin' to the checkpoint storage failed: no space is left on the device (ENOSPC)", failure.Message);
        Assert.True(StorageErrors.IsOutOfSpace(failure));
    }

    [Fact]
    public void Failed_AlreadyASentence_KeptAsItIs()
    {
        var inner = new StorageException("'rank-0/model.bin' leads out of the staging directory", 18);

        Assert.Same(inner, StorageErrors.Failed("reading 'rank-0/model.bin' from the staging directory", inner));
    }

    [Fact]
    public void Cap_LongerThanTheLimit_CutWithAnEllipsis()
    {
        var path = new string('a', 5000);

        var shown = UserText.Cap(path);

        Assert.Equal(new string('a', UserText.MaxEchoedChars) + "…", shown);
    }

    [Fact]
    public void Cap_SurrogatePairAtTheCut_NotSplit()
    {
        var path = new string('a', UserText.MaxEchoedChars - 1) + "😀" + new string('b', 10);

        var shown = UserText.Cap(path);

        Assert.Equal(new string('a', UserText.MaxEchoedChars - 1) + "…", shown);
    }

    [Fact]
    public void Quote_ControlCharacters_CannotStartANewLogLine()
    {
        Assert.Equal("'rank-0/a?fail: forged'", UserText.Quote("rank-0/a\nfail: forged"));
    }
}
