namespace Checkpoint.TestSupport;

/// <summary>Where the processes under test live, found from the test assembly's location.</summary>
public static class RepoPaths
{
    public const string SidecarBinaryVariable = "CHECKPOINT_SIDECAR_BIN";

    public static string Root { get; } = FindRoot();

    /// <summary>Release or Debug, whichever the tests were built as; the sample trainer is built alongside.</summary>
    private static string Configuration { get; } =
        AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
            ? "Release"
            : "Debug";

    /// <summary>The published Native AOT sidecar: tests/run-tests.sh publishes it and sets the variable.</summary>
    public static string SidecarBinary
    {
        get
        {
            var path = Environment.GetEnvironmentVariable(SidecarBinaryVariable);
            if (string.IsNullOrEmpty(path))
            {
                path = Path.Combine(Root, "artifacts", "sidecar", "checkpoint-sidecar");
            }

            return File.Exists(path)
                ? path
                : throw new FileNotFoundException(
                    $"The published sidecar '{path}' does not exist. Run tests/run-tests.sh, which publishes it, " +
                    $"or set {SidecarBinaryVariable} to a published checkpoint-sidecar binary.");
        }
    }

    public static string SampleTrainerDll
    {
        get
        {
            var path = Path.Combine(Root, "trainer-sdk", "dotnet", "samples", "SampleTrainer", "bin", Configuration, "net10.0", "sample-trainer.dll");
            return File.Exists(path)
                ? path
                : throw new FileNotFoundException($"The sample trainer '{path}' is not built; build Checkpoint.sln as {Configuration}.");
        }
    }

    public static string FaultFsScript => Path.Combine(Root, "tests", "faultfs", "faultfs.py");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Checkpoint.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"Checkpoint.sln not found above {AppContext.BaseDirectory}");
    }
}
