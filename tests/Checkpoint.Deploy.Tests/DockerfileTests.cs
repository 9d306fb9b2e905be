using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Checkpoint.Deploy.Tests;

/// <summary>
/// Dockerfile.sidecar, read as text (no container engine runs on these machines): it builds from tags
/// Microsoft publishes for .NET 10, copies what exists and what .dockerignore lets through, cross-compiles
/// for both architectures, and ends in a non-root stage without a shell whose entrypoint is the binary.
/// </summary>
public sealed class DockerfileTests
{
    /// <summary>
    /// The multi-architecture (amd64 and arm64) tags of .NET 10 images, per repository, as dotnet/dotnet-docker
    /// documents them: README.sdk.md on main (the 10.0.101 SDK tag listing) and README.runtime-deps.md on the
    /// nightly branch (the 10.0.0-rc.2 listing; its floating 10.0 tags are the ones the release kept). Only the
    /// floating tags that name both architectures: an -amd64 or -arm64v8 tag would make a multi-arch build use
    /// one architecture's image for both. .NET 10 publishes no Debian images (no bookworm, no trixie).
    /// </summary>
    private static readonly Dictionary<string, string[]> DocumentedDotNet10Tags = new()
    {
        ["mcr.microsoft.com/dotnet/sdk"] =
        [
            "10.0", "10.0-noble", "10.0-aot", "10.0-noble-aot",
            "10.0-alpine", "10.0-alpine3.22", "10.0-alpine3.23", "10.0-alpine-aot", "10.0-alpine3.22-aot", "10.0-alpine3.23-aot",
            "10.0-azurelinux3.0", "10.0-azurelinux3.0-aot",
        ],
        ["mcr.microsoft.com/dotnet/runtime-deps"] =
        [
            "10.0", "10.0-noble", "10.0-noble-chiseled", "10.0-noble-chiseled-extra",
            "10.0-alpine", "10.0-alpine3.22", "10.0-alpine-extra", "10.0-alpine3.22-extra",
            "10.0-azurelinux3.0", "10.0-azurelinux3.0-distroless", "10.0-azurelinux3.0-distroless-extra",
        ],
    };

    private static Dockerfile Parse() => Dockerfile.Parse(File.ReadAllText(Path.Combine(RepoPaths.Root, "Dockerfile.sidecar")));

    [Fact]
    public void From_EveryImageIsATagMicrosoftDocumentsForDotNet10()
    {
        var dockerfile = Parse();
        Assert.Equal(2, dockerfile.Stages.Count);
        foreach (var stage in dockerfile.Stages)
        {
            var image = dockerfile.Expand(stage.Image);
            var colon = image.LastIndexOf(':');
            Assert.True(colon > 0, $"FROM {image}: no tag (latest moves to the next .NET)");
            var (repository, tag) = (image[..colon], image[(colon + 1)..]);
            Assert.True(DocumentedDotNet10Tags.TryGetValue(repository, out var tags), $"FROM {image}: not a .NET image this build knows");
            Assert.True(tags.Contains(tag), $"FROM {image}: {tag} is not a multi-arch .NET 10 tag of {repository} ({string.Join(", ", tags)})");
        }
    }

    [Fact]
    public void From_BuildsWithTheAotSdkOnTheBuilderAndRunsOnChiseledOfTheSameUbuntu()
    {
        var dockerfile = Parse();
        var (build, final) = (dockerfile.Stages[0], dockerfile.Stages[^1]);

        // clang and zlib for Native AOT are in the -aot SDK images only.
        Assert.EndsWith("-aot", dockerfile.Expand(build.Image), StringComparison.Ordinal);
        // The build runs on the builder's architecture and cross-compiles; the final stage is the target's.
        Assert.Equal("$BUILDPLATFORM", build.Platform);
        Assert.Null(final.Platform);
        // No shell, no package manager, non-root by default.
        Assert.Contains("-chiseled", dockerfile.Expand(final.Image), StringComparison.Ordinal);
        // The binary links against the glibc of the build image: both stages are the same Ubuntu release.
        var release = Regex.Match(dockerfile.Expand(final.Image), @":10\.0-([a-z]+)-").Groups[1].Value;
        Assert.Equal("noble", release);
        Assert.Contains($"-{release}-", dockerfile.Expand(build.Image), StringComparison.Ordinal);
    }

    [Fact]
    public void Build_MapsDockerArchitecturesToDotNetRuntimeIdentifiers()
    {
        var build = Parse().Stages[0];
        Assert.Contains(build.Instructions, i => i is { Keyword: "ARG", Arguments: "TARGETARCH" });
        Assert.Contains(build.Instructions, i => i is { Keyword: "ARG", Arguments: "BUILDARCH" });

        var publish = Assert.Single(build.Instructions, i => i.Keyword == "RUN" && i.Arguments.Contains("dotnet publish", StringComparison.Ordinal));
        // Docker's amd64 is .NET's x64: `-r linux-$TARGETARCH` would ask for linux-amd64, which does not exist.
        var arms = Regex.Matches(publish.Arguments, @"(\w+)\)\s*rid=([\w-]+)")
            .ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
        Assert.Equal(new Dictionary<string, string> { ["amd64"] = "linux-x64", ["arm64"] = "linux-arm64" }, arms);
        Assert.Matches(@"dotnet publish \S+ .*-r ""\$rid""", publish.Arguments);

        // A foreign target gets its cross toolchain; an unknown one stops the build.
        var toolchain = Assert.Single(build.Instructions, i => i.Keyword == "RUN" && i.Arguments.Contains("dpkg --add-architecture", StringComparison.Ordinal));
        Assert.Contains("arm64) triple=aarch64-linux-gnu", toolchain.Arguments, StringComparison.Ordinal);
        Assert.Contains("amd64) triple=x86-64-linux-gnu", toolchain.Arguments, StringComparison.Ordinal);
        Assert.Contains("\"gcc-$triple\"", toolchain.Arguments, StringComparison.Ordinal);
        Assert.Contains("exit 1", toolchain.Arguments, StringComparison.Ordinal);
    }

    [Fact]
    public void Copy_EverySourceExistsAndIsNotExcludedByDockerignore()
    {
        var dockerfile = Parse();
        var ignore = DockerIgnore.Load(Path.Combine(RepoPaths.Root, ".dockerignore"));
        var copied = new List<string>();
        foreach (var copy in dockerfile.Stages.SelectMany(s => s.Instructions).Where(i => i.Keyword == "COPY" && !i.Arguments.Contains("--from=", StringComparison.Ordinal)))
        {
            var words = copy.Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(w => !w.StartsWith("--", StringComparison.Ordinal)).ToList();
            Assert.True(words.Count >= 2, $"COPY {copy.Arguments}");
            foreach (var source in words[..^1])
            {
                var relative = source.TrimEnd('/');
                var full = Path.Combine(RepoPaths.Root, relative);
                Assert.True(File.Exists(full) || Directory.Exists(full), $"COPY {source}: no such file or directory in the repository");
                Assert.False(ignore.Excludes(relative), $"COPY {source}: .dockerignore leaves it out of the build context");
                var files = Directory.Exists(full) ? SourceFiles(full) : [full];
                foreach (var file in files)
                {
                    var path = Path.GetRelativePath(RepoPaths.Root, file).Replace('\\', '/');
                    Assert.False(ignore.Excludes(path), $"COPY {source}: .dockerignore leaves {path} out of the build context");
                    copied.Add(path);
                }
            }
        }

        // What the publish needs: the project it names, the build settings every project shares, the protos.
        var publish = dockerfile.Stages[0].Instructions.Single(i => i.Keyword == "RUN" && i.Arguments.Contains("dotnet publish", StringComparison.Ordinal));
        var project = Regex.Match(publish.Arguments, @"dotnet publish (\S+\.csproj)").Groups[1].Value;
        Assert.Contains(project, copied);
        foreach (var props in Directory.EnumerateFiles(RepoPaths.Root, "Directory.*.props"))
        {
            Assert.Contains(Path.GetFileName(props), copied);
        }

        Assert.Contains(copied, p => p.StartsWith("protos/", StringComparison.Ordinal) && p.EndsWith(".proto", StringComparison.Ordinal));
    }

    [Fact]
    public void Dockerignore_LeavesBuildOutputsAtAnyDepthOutOfTheContext()
    {
        var ignore = DockerIgnore.Load(Path.Combine(RepoPaths.Root, ".dockerignore"));
        // A host's obj/project.assets.json copied in would point the container's build at the host's paths.
        Assert.True(ignore.Excludes("sidecar/obj/project.assets.json"));
        Assert.True(ignore.Excludes("sidecar/bin/Release/net10.0/checkpoint-sidecar.dll"));
        Assert.True(ignore.Excludes("artifacts/sidecar/checkpoint-sidecar"));
        Assert.True(ignore.Excludes(".git/HEAD"));
        Assert.True(ignore.Excludes("tests/Checkpoint.Deploy.Tests/DockerfileTests.cs"));
        Assert.True(ignore.Excludes("trainer-sdk/python/pyproject.toml"));
        Assert.False(ignore.Excludes("sidecar/Program.cs"));
    }

    [Fact]
    public void FinalStage_RunsAsANonRootUserWithoutShellCommands()
    {
        var final = Parse().Stages[^1];
        // Chiseled images have no shell: a RUN (or a shell-form CMD/ENTRYPOINT) there cannot work.
        Assert.DoesNotContain(final.Instructions, i => i.Keyword is "RUN" or "SHELL");
        Assert.All(final.Instructions.Where(i => i.Keyword is "CMD" or "ENTRYPOINT"), i => Assert.StartsWith("[", i.Arguments, StringComparison.Ordinal));

        var user = Assert.Single(final.Instructions, i => i.Keyword == "USER").Arguments;
        var name = user.Split(':')[0];
        Assert.True(name == "app" || (int.TryParse(name, out var uid) && uid > 0), $"USER {user}: not the image's non-root user");
        // The pods' runAsUser is the image's user (deploy/examples).
        Assert.True(name == "app" || name == "1654", $"USER {user}: the examples run as 1654");
    }

    [Fact]
    public void Entrypoint_IsTheExecFormOfThePublishedBinaryNamedByTheProject()
    {
        var dockerfile = Parse();
        var final = dockerfile.Stages[^1];
        var entrypoint = JsonSerializer.Deserialize<string[]>(Assert.Single(final.Instructions, i => i.Keyword == "ENTRYPOINT").Arguments);
        Assert.NotNull(entrypoint);
        Assert.Single(entrypoint);

        // The binary copied from the build stage is the file publish writes: <output>/<AssemblyName>.
        var copy = Assert.Single(final.Instructions, i => i.Keyword == "COPY" && i.Arguments.StartsWith("--from=build ", StringComparison.Ordinal));
        var (source, destination) = (copy.Arguments.Split(' ')[1], copy.Arguments.Split(' ')[2]);
        Assert.Equal(entrypoint[0], destination.EndsWith('/') ? destination + Path.GetFileName(source) : destination);

        var csproj = XDocument.Load(Path.Combine(RepoPaths.Root, "sidecar", "Checkpoint.Sidecar.csproj"));
        var assemblyName = csproj.Descendants("AssemblyName").Single().Value;
        Assert.Equal(assemblyName, Path.GetFileName(source));
        var publish = dockerfile.Stages[0].Instructions.Single(i => i.Keyword == "RUN" && i.Arguments.Contains("dotnet publish", StringComparison.Ordinal));
        var output = Regex.Match(publish.Arguments, @"-o (\S+)").Groups[1].Value;
        Assert.Equal($"{output.TrimEnd('/')}/{assemblyName}", source);
        Assert.Equal("true", csproj.Descendants("PublishAot").Single().Value);
    }

    [Fact]
    public void Labels_DescribeTheImage_WithTheProjectVersionAsTheDefault()
    {
        var dockerfile = Parse();
        var final = dockerfile.Stages[^1];
        var label = Assert.Single(final.Instructions, i => i.Keyword == "LABEL");
        var labels = Regex.Matches(label.Arguments, @"(org\.opencontainers\.image\.[a-z]+)=""([^""]*)""")
            .ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
        foreach (var key in new[] { "title", "description", "version", "source", "licenses" })
        {
            Assert.False(string.IsNullOrWhiteSpace(labels.GetValueOrDefault("org.opencontainers.image." + key)), $"label org.opencontainers.image.{key}");
        }

        Assert.Equal("Apache-2.0", labels["org.opencontainers.image.licenses"]);
        Assert.Equal(Path.GetFileName(Assert.Single(JsonSerializer.Deserialize<string[]>(final.Instructions.Single(i => i.Keyword == "ENTRYPOINT").Arguments)!)),
            labels["org.opencontainers.image.title"]);
        Assert.StartsWith("https://", dockerfile.Expand(labels["org.opencontainers.image.source"]), StringComparison.Ordinal);

        // A global ARG is empty inside a stage unless the stage declares it again.
        Assert.Equal("${VERSION}", labels["org.opencontainers.image.version"]);
        foreach (var stage in dockerfile.Stages)
        {
            var uses = stage.Instructions.FindIndex(i => i.Keyword is "LABEL" or "RUN" && Regex.IsMatch(i.Arguments, @"\$\{?VERSION\b"));
            if (uses >= 0)
            {
                Assert.Contains(stage.Instructions.Take(uses), i => i is { Keyword: "ARG", Arguments: "VERSION" });
            }
        }

        Assert.Equal(VersionTests.ProjectVersion(), dockerfile.GlobalArgs["VERSION"]);
    }

    [Fact]
    public void Dockerfile_IsTheOneTheReadmeTellsHowToBuildForBothArchitectures()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        Assert.Contains("docker buildx build --platform linux/amd64,linux/arm64 -f Dockerfile.sidecar", readme, StringComparison.Ordinal);
    }

    /// <summary>Files under a source directory, without build outputs (which .dockerignore leaves out on purpose).</summary>
    private static IEnumerable<string> SourceFiles(string directory) =>
        Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories)
            .Where(f => !Regex.IsMatch(Path.GetRelativePath(directory, f).Replace('\\', '/'), @"(^|/)(bin|obj)/"));

    /// <summary>One build stage: its base image, the --platform it asks for, and its instructions.</summary>
    internal sealed record Stage(string Image, string? Platform, List<Instruction> Instructions);

    internal sealed record Instruction(string Keyword, string Arguments);

    /// <summary>A Dockerfile as BuildKit reads it: comment lines dropped, continuation lines joined, split at each FROM.</summary>
    internal sealed record Dockerfile(Dictionary<string, string> GlobalArgs, List<Stage> Stages)
    {
        public static Dockerfile Parse(string text)
        {
            var logical = new List<string>();
            var current = "";
            foreach (var raw in text.Split('\n'))
            {
                var line = raw.TrimEnd('\r');
                if (line.TrimStart().StartsWith('#'))
                {
                    continue;
                }

                if (line.EndsWith('\\'))
                {
                    current += line[..^1].Trim() + " ";
                    continue;
                }

                current += line.Trim();
                if (current.Length > 0)
                {
                    logical.Add(current);
                }

                current = "";
            }

            var globals = new Dictionary<string, string>();
            var stages = new List<Stage>();
            foreach (var line in logical)
            {
                var space = line.IndexOf(' ');
                var (keyword, arguments) = (line[..space].ToUpperInvariant(), line[(space + 1)..].Trim());
                if (keyword == "FROM")
                {
                    var from = Regex.Match(arguments, @"^(?:--platform=(\S+)\s+)?(\S+)(?:\s+AS\s+\S+)?$", RegexOptions.IgnoreCase);
                    Assert.True(from.Success, $"FROM {arguments}");
                    stages.Add(new Stage(from.Groups[2].Value, from.Groups[1].Success ? from.Groups[1].Value : null, []));
                }
                else if (stages.Count == 0)
                {
                    Assert.Equal("ARG", keyword);
                    var arg = arguments.Split('=', 2);
                    globals[arg[0]] = arg.Length == 2 ? arg[1] : "";
                }
                else
                {
                    stages[^1].Instructions.Add(new Instruction(keyword, arguments));
                }
            }

            return new Dockerfile(globals, stages);
        }

        /// <summary>$NAME and ${NAME} replaced by the global ARG defaults, as a FROM line sees them.</summary>
        public string Expand(string value) =>
            Regex.Replace(value, @"\$\{?(\w+)\}?", m => GlobalArgs.TryGetValue(m.Groups[1].Value, out var v) ? v : m.Value);
    }

    /// <summary>
    /// The .dockerignore rules BuildKit applies: paths relative to the context root, `*` within a path
    /// element, `**` across elements, a pattern matching a directory excludes everything under it, the last
    /// matching line wins and `!` re-includes.
    /// </summary>
    private sealed record DockerIgnore(List<(Regex Pattern, bool Exclude)> Rules)
    {
        public static DockerIgnore Load(string path)
        {
            var rules = new List<(Regex, bool)>();
            foreach (var raw in File.ReadAllLines(path))
            {
                var line = raw.Trim();
                if (line.Length == 0 || line.StartsWith('#'))
                {
                    continue;
                }

                var exclude = !line.StartsWith('!');
                var pattern = line.TrimStart('!').Trim('/');
                var regex = "^" + Regex.Escape(pattern).Replace(@"\*\*/", "(.*/)?").Replace(@"\*\*", ".*").Replace(@"\*", "[^/]*").Replace(@"\?", "[^/]") + "(/.*)?$";
                rules.Add((new Regex(regex), exclude));
            }

            return new DockerIgnore(rules);
        }

        public bool Excludes(string relativePath)
        {
            var excluded = false;
            foreach (var (pattern, exclude) in Rules)
            {
                if (pattern.IsMatch(relativePath))
                {
                    excluded = exclude;
                }
            }

            return excluded;
        }
    }
}
