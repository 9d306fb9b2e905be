using System.Text.RegularExpressions;
using System.Xml.Linq;
using Checkpoint.Deploy.Tests.Infrastructure;

namespace Checkpoint.Deploy.Tests;

/// <summary>
/// One version for everything a release ships: the .NET projects (Directory.Build.props), the image
/// (Dockerfile.sidecar's VERSION default, the examples' image tag), the Python SDK (pyproject.toml) and the
/// newest CHANGELOG.md entry.
/// </summary>
public sealed class VersionTests
{
    /// <summary>&lt;Version&gt; in Directory.Build.props: the one every other place must repeat.</summary>
    internal static string ProjectVersion()
    {
        var props = XDocument.Load(Path.Combine(RepoPaths.Root, "Directory.Build.props"));
        var version = Assert.Single(props.Descendants("Version")).Value;
        Assert.Matches(@"^\d+\.\d+\.\d+$", version);
        return version;
    }

    [Fact]
    public void Dockerfile_VersionArgDefault_IsTheProjectVersion()
    {
        var dockerfile = DockerfileTests.Dockerfile.Parse(File.ReadAllText(Path.Combine(RepoPaths.Root, "Dockerfile.sidecar")));
        Assert.Equal(ProjectVersion(), dockerfile.GlobalArgs["VERSION"]);
    }

    [Fact]
    public void PythonSdk_PyprojectVersion_IsTheProjectVersion()
    {
        var pyproject = File.ReadAllText(Path.Combine(RepoPaths.Root, "trainer-sdk", "python", "pyproject.toml"));
        // The [project] table's version (not a dependency's or a tool's).
        var project = Regex.Match(pyproject, @"^\[project\]\s*$(.*?)(?=^\[|\z)", RegexOptions.Multiline | RegexOptions.Singleline);
        Assert.True(project.Success, "pyproject.toml has no [project] table");
        var version = Regex.Match(project.Groups[1].Value, @"^version\s*=\s*""([^""]+)""", RegexOptions.Multiline);
        Assert.True(version.Success, "pyproject.toml's [project] has no literal version");
        Assert.Equal(ProjectVersion(), version.Groups[1].Value);
    }

    [Fact]
    public void Changelog_NewestEntry_IsTheProjectVersion_AndEntriesAreNewestFirst()
    {
        var changelog = File.ReadAllText(Path.Combine(RepoPaths.Root, "CHANGELOG.md"));
        // Keep a Changelog: "## [Unreleased]" first if present, then "## [x.y.z] - YYYY-MM-DD", newest first.
        var entries = Regex.Matches(changelog, @"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", RegexOptions.Multiline)
            .Select(m => (Version: Version.Parse(m.Groups[1].Value), Date: DateOnly.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)))
            .ToList();
        Assert.True(entries.Count >= 2, "CHANGELOG.md has fewer than two versioned entries");
        Assert.Equal(ProjectVersion(), entries[0].Version.ToString());
        Assert.Equal(entries.OrderByDescending(e => e.Version).ToList(), entries);
        Assert.Equal(entries.OrderByDescending(e => e.Date).ToList(), entries);
    }

    [Fact]
    public void Examples_UseTheImageTagOfTheProjectVersion()
    {
        foreach (var example in Kustomize.Examples)
        {
            var kustomization = File.ReadAllText(Path.Combine(RepoPaths.Root, example, "kustomization.yaml"));
            Assert.Matches($@"(?m)^\s+newTag: ""{Regex.Escape(ProjectVersion())}""$", kustomization);
        }
    }
}
