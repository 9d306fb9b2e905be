using Checkpoint.Sidecar.Configuration;
using Checkpoint.TestSupport;

namespace Checkpoint.Sidecar.Tests.Configuration;

public sealed class SidecarOptionsValidatorTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly SidecarOptionsValidator _validator = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Validate_ValidOptions_Succeeds()
    {
        var result = _validator.Validate(null, ValidOptions());

        Assert.True(result.Succeeded, result.FailureMessage);
        Assert.Empty(Directory.EnumerateFileSystemEntries(_temp.Path, ".checkpoint-write-probe-*", SearchOption.AllDirectories));
    }

    [Fact]
    public void Validate_SocketPathOf100Bytes_Succeeds()
    {
        var options = ValidOptions();
        var directory = _temp.CreateDirectory("s");
        options.SocketPath = Path.Combine(directory, new string('x', 100 - directory.Length - 1));
        Assert.Equal(100, options.SocketPath.Length);

        var result = _validator.Validate(null, options);

        Assert.True(result.Succeeded, result.FailureMessage);
    }

    [Fact]
    public void Validate_StagingDirNotSet_FailsNamingIt() =>
        AssertFailsWith("CHECKPOINT_STAGING_DIR", o => o.StagingDir = "");

    [Fact]
    public void Validate_StagingDirMissing_FailsNamingIt() =>
        AssertFailsWith("CHECKPOINT_STAGING_DIR", o => o.StagingDir = _temp.Combine("no-such-dir"));

    [Fact]
    public void Validate_StorageDirMissing_FailsNamingIt() =>
        AssertFailsWith("CHECKPOINT_STORAGE_DIR", o => o.StorageDir = _temp.Combine("no-such-dir"));

    [Fact]
    public void Validate_StorageDirIsAFile_FailsNamingIt()
    {
        var file = TempDirectory.WriteFile(_temp.Path, "a-file", [1]);

        AssertFailsWith("CHECKPOINT_STORAGE_DIR", o => o.StorageDir = file);
    }

    [Fact]
    public void Validate_StorageDirUnderAFile_FailsNamingIt()
    {
        var file = TempDirectory.WriteFile(_temp.Path, "a-file", [1]);

        AssertFailsWith("CHECKPOINT_STORAGE_DIR", o => o.StorageDir = Path.Combine(file, "storage"));
    }

    [Fact]
    public void Validate_StorageDirNotWritable_FailsNamingIt()
    {
        // Permission bits do not stop root; /proc refuses new files whoever asks.
        var message = AssertFailsWith("CHECKPOINT_STORAGE_DIR", o => o.StorageDir = "/proc");

        Assert.Contains("not writable", message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_RelativeSocketPath_FailsNamingIt() =>
        AssertFailsWith("CHECKPOINT_SOCKET_PATH", o => o.SocketPath = "run/sidecar.sock");

    [Fact]
    public void Validate_SocketPathLongerThan100Bytes_FailsNamingIt()
    {
        // 101 bytes: the private directory the socket is first bound in takes it past the 107 a Unix socket path may have.
        var message = AssertFailsWith("CHECKPOINT_SOCKET_PATH", o => o.SocketPath = "/" + new string('s', 100));

        Assert.Contains("100 bytes", message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_SocketDirectoryMissing_FailsNamingIt() =>
        AssertFailsWith("CHECKPOINT_SOCKET_PATH", o => o.SocketPath = _temp.Combine("no-such-dir", "sidecar.sock"));

    [Theory]
    [InlineData(70000)]
    [InlineData(-1)]
    public void Validate_PortOutOfRange_FailsNamingIt(int port) =>
        AssertFailsWith("CHECKPOINT_METRICS_PORT", o => o.MetricsPort = port);

    [Theory]
    [InlineData(-1)]
    [InlineData(0.5)]
    [InlineData(double.NaN)]
    public void Validate_BadPodAnnotationInterval_FailsNamingIt(double seconds) =>
        AssertFailsWith("CHECKPOINT_POD_ANNOTATION_INTERVAL_SECONDS", o => o.PodAnnotationIntervalSeconds = seconds);

    [Theory]
    [InlineData(0)]
    [InlineData(1001)]
    public void Validate_BadMtbfMinPreemptions_FailsNamingIt(int count) =>
        AssertFailsWith("CHECKPOINT_MTBF_MIN_PREEMPTIONS", o => o.MtbfMinPreemptions = count);

    [Theory]
    [InlineData(-1)]
    [InlineData(double.NaN)]
    [InlineData(1e13)]
    public void Validate_BadMtbfPrior_FailsNamingIt(double seconds) =>
        AssertFailsWith("CHECKPOINT_MTBF_PRIOR_SECONDS", o => o.MtbfPriorSeconds = seconds);

    [Theory]
    [InlineData(-1)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    public void Validate_BadGracePeriod_FailsNamingIt(double seconds) =>
        AssertFailsWith("CHECKPOINT_GRACE_PERIOD_SECONDS", o => o.GracePeriodSeconds = seconds);

    [Fact]
    public void Validate_NegativeSafetyMargin_FailsNamingIt() =>
        AssertFailsWith("CHECKPOINT_SAFETY_MARGIN_SECONDS", o => o.SafetyMarginSeconds = -0.5);

    [Fact]
    public void Validate_KeepZero_FailsNamingIt() =>
        AssertFailsWith("CHECKPOINT_KEEP", o => o.Keep = 0);

    [Theory]
    [InlineData(-1)]
    [InlineData(20)]
    public void Validate_PeriodicNiceOutOfRange_FailsNamingIt(int nice) =>
        AssertFailsWith("CHECKPOINT_PERIODIC_NICE", o => o.PeriodicNice = nice);

    [Theory]
    [InlineData("")]
    [InlineData("Idle")]
    [InlineData("realtime")]
    public void Validate_UnknownPeriodicIoClass_FailsNamingIt(string ioClass) =>
        AssertFailsWith("CHECKPOINT_PERIODIC_IO_CLASS", o => o.PeriodicIoClass = ioClass);

    [Theory]
    [InlineData(-1)]
    [InlineData(0.5)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(2e6)]
    public void Validate_BadPeriodicRate_FailsNamingIt(double mibPerSecond) =>
        AssertFailsWith("CHECKPOINT_PERIODIC_RATE_MIB_PER_SECOND", o => o.PeriodicRateMiBPerSecond = mibPerSecond);

    [Theory]
    [InlineData(0, "none", 0)]
    [InlineData(19, "best-effort", 1)]
    [InlineData(5, "idle", 100)]
    public void Validate_PeriodicPaceInRange_Succeeds(int nice, string ioClass, double mibPerSecond)
    {
        var options = ValidOptions();
        options.PeriodicNice = nice;
        options.PeriodicIoClass = ioClass;
        options.PeriodicRateMiBPerSecond = mibPerSecond;

        var result = _validator.Validate(null, options);

        Assert.True(result.Succeeded, result.FailureMessage);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(65)]
    public void Validate_ParallelismOutOfRange_FailsNamingIt(int parallelism) =>
        AssertFailsWith("CHECKPOINT_COPY_PARALLELISM", o => o.CopyParallelism = parallelism);

    [Theory]
    [InlineData(63)]
    [InlineData(65537)]
    public void Validate_BufferOutOfRange_FailsNamingIt(int kib) =>
        AssertFailsWith("CHECKPOINT_COPY_BUFFER_KIB", o => o.CopyBufferKiB = kib);

    [Theory]
    [InlineData(63)]
    [InlineData(65537)]
    public void Validate_MaxReportOutOfRange_FailsNamingIt(int kib) =>
        AssertFailsWith("CHECKPOINT_MAX_REPORT_KIB", o => o.MaxReportKiB = kib);

    [Theory]
    [InlineData("team/job")]
    [InlineData("..")]
    [InlineData("")]
    public void Validate_JobNameNotASingleSegment_FailsNamingIt(string jobName) =>
        AssertFailsWith("CHECKPOINT_JOB_NAME", o => o.JobName = jobName);

    [Fact]
    public void Validate_NamespaceWithSlash_FailsNamingIt() =>
        AssertFailsWith("POD_NAMESPACE", o => o.PodNamespace = "a/b");

    [Theory]
    [InlineData("Train_0")]
    [InlineData("-train")]
    [InlineData("train/0")]
    public void Validate_PodNameNotAPodName_FailsNamingIt(string podName) =>
        AssertFailsWith("POD_NAME", o => o.PodName = podName);

    [Theory]
    [InlineData("readback")]
    [InlineData("none")]
    public void Validate_VerifyModeUnknown_FailsNamingTheModes(string mode)
    {
        var failure = AssertFailsWith("CHECKPOINT_VERIFY", o => o.Verify = mode);
        Assert.Contains("'read-back'", failure, StringComparison.Ordinal);
        Assert.Contains("'read-back-always'", failure, StringComparison.Ordinal);
        Assert.Contains("'write-hash'", failure, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(SidecarOptions.VerifyReadBack, true)]
    [InlineData(SidecarOptions.VerifyReadBackAlways, true)]
    [InlineData(SidecarOptions.VerifyWriteHash, false)]
    public void Validate_VerifyModes_PassAndSayWhetherFilesAreReadBack(string mode, bool readBack)
    {
        var options = ValidOptions();
        options.Verify = mode;

        Assert.True(_validator.Validate(null, options).Succeeded);
        Assert.Equal(readBack, options.ReadBack);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    public void Validate_JobCommitTimeoutNotPositive_FailsNamingIt(double seconds) =>
        AssertFailsWith("CHECKPOINT_JOB_COMMIT_TIMEOUT_SECONDS", o => o.JobCommitTimeoutSeconds = seconds);

    [Fact]
    public void Validate_JobWideSettingsGiven_Pass()
    {
        var options = ValidOptions();
        options.PodName = "train-3.node-a";
        options.Verify = SidecarOptions.VerifyWriteHash;
        options.JobCommitTimeoutSeconds = 30;

        Assert.True(_validator.Validate(null, options).Succeeded);
    }

    [Theory]
    [InlineData("ns/job", "file")]
    [InlineData("ns/job", "fifo")]
    [InlineData("ns", "file")]
    public void Validate_JobDirectoryPathTakenByNonDirectory_FailsNamingThePath(string taken, string kind)
    {
        var failure = AssertFailsWith("CHECKPOINT_STORAGE_DIR", o =>
        {
            var path = Path.Combine(o.StorageDir, taken);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            if (kind == "fifo")
            {
                Posix.MakeFifo(path);
            }
            else
            {
                File.WriteAllText(path, "someone else's");
            }
        });

        Assert.Contains($"'{Path.Combine(_temp.Path, "storage", "ns", "job")}'", failure, StringComparison.Ordinal);
        Assert.Contains($"'{Path.Combine(_temp.Path, "storage", taken)}' exists and is not a directory", failure, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_JobDirectoryIsSymlinkToDirectory_Succeeds()
    {
        var options = ValidOptions();
        Directory.CreateDirectory(Path.Combine(options.StorageDir, "ns"));
        Directory.CreateSymbolicLink(Path.Combine(options.StorageDir, "ns", "job"), _temp.CreateDirectory("elsewhere"));

        var result = _validator.Validate(null, options);

        Assert.True(result.Succeeded, result.FailureMessage);
    }

    [Fact]
    public void Validate_SeveralBadSettings_ReportsEach()
    {
        var options = ValidOptions();
        options.Keep = 0;
        options.MetricsPort = -1;

        var result = _validator.Validate(null, options);

        Assert.True(result.Failed);
        Assert.Equal(2, result.Failures!.Count());
        Assert.Contains(result.Failures!, f => f.StartsWith("CHECKPOINT_KEEP:", StringComparison.Ordinal));
        Assert.Contains(result.Failures!, f => f.StartsWith("CHECKPOINT_METRICS_PORT:", StringComparison.Ordinal));
    }

    private SidecarOptions ValidOptions() => new()
    {
        StagingDir = _temp.CreateDirectory("staging"),
        StorageDir = _temp.CreateDirectory("storage"),
        SocketPath = Path.Combine(_temp.CreateDirectory("run"), "sidecar.sock"),
        JobName = "job",
        PodNamespace = "ns",
    };

    /// <returns>The one failure message.</returns>
    [Theory]
    [InlineData(-1)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(86401)]
    public void Validate_FirstTrainerTimeoutOutOfRange_FailsNamingIt(double seconds) =>
        AssertFailsWith("CHECKPOINT_FIRST_TRAINER_TIMEOUT_SECONDS", o => o.FirstTrainerTimeoutSeconds = seconds);

    [Theory]
    [InlineData(null, true, 600)]
    [InlineData(null, false, 0)]
    [InlineData(0.0, true, 0)]
    [InlineData(30.0, false, 30)]
    public void FirstTrainerTimeout_Unset_DependsOnExitWhenTrainersDone(double? configured, bool exitWhenDone, double expectedSeconds)
    {
        var options = ValidOptions();
        options.FirstTrainerTimeoutSeconds = configured;
        options.ExitWhenTrainersDone = exitWhenDone;

        Assert.True(_validator.Validate(null, options).Succeeded);
        Assert.Equal(TimeSpan.FromSeconds(expectedSeconds), options.FirstTrainerTimeout);
    }

    private string AssertFailsWith(string setting, Action<SidecarOptions> breakIt)
    {
        var options = ValidOptions();
        breakIt(options);

        var result = _validator.Validate(null, options);

        Assert.True(result.Failed);
        var failure = Assert.Single(result.Failures!);
        Assert.StartsWith(setting + ":", failure, StringComparison.Ordinal);
        return failure;
    }
}
