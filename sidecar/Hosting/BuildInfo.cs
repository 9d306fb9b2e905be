using System.Reflection;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// What was built: the version from Directory.Build.props and the commit the SDK appends to the
/// informational version (<c>0.2.0+&lt;sha&gt;</c>) when the source was a git checkout. Read from an
/// assembly attribute, which Native AOT keeps.
/// </summary>
public static class BuildInfo
{
    private static readonly string Informational =
        typeof(BuildInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    /// <summary><c>0.2.0</c>: the version without build metadata.</summary>
    public static string Version { get; } = Informational.Split('+')[0];

    /// <summary>The commit built, or empty when the build did not know it (a source tarball, no git).</summary>
    public static string Commit { get; } = Informational.Contains('+', StringComparison.Ordinal) ? Informational[(Informational.IndexOf('+', StringComparison.Ordinal) + 1)..] : "";

    /// <summary>What <c>--version</c> prints: <c>checkpoint-sidecar 0.2.0 (commit 1a2b3c4d5e6f)</c>.</summary>
    public static string Describe() =>
        Commit.Length == 0 ? $"checkpoint-sidecar {Version}" : $"checkpoint-sidecar {Version} (commit {Commit})";
}
