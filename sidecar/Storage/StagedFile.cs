namespace Checkpoint.Sidecar.Storage;

/// <summary>A file a trainer reported, checked to lie inside the checkpoint's staging directory.</summary>
/// <param name="RelativePath">Normalised, '/'-separated, as it will appear on storage and in the manifest.</param>
/// <param name="SourcePath">Absolute path in staging, symlinks resolved.</param>
public sealed record StagedFile(string RelativePath, string SourcePath, long Size);
