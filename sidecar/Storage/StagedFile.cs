namespace Checkpoint.Sidecar.Storage;

/// <summary>A file a trainer reported, checked to lie inside the checkpoint's staging directory.</summary>
/// <param name="RelativePath">Normalised, '/'-separated, as it will appear on storage and in the manifest.</param>
/// <param name="SourcePath">Absolute path in staging, symlinks resolved.</param>
/// <param name="StagingRoot">The staging directory with symlinks resolved; <paramref name="SourcePath"/> lies beneath it.</param>
public sealed record StagedFile(string RelativePath, string SourcePath, long Size, string StagingRoot)
{
    /// <summary>The path the copy opens, relative to <see cref="StagingRoot"/>, never leaving it.</summary>
    public string PathBeneathRoot => Path.GetRelativePath(StagingRoot, SourcePath);
}
