namespace Checkpoint.Sidecar.Storage;

/// <summary>A file a trainer reported, checked to lie inside the checkpoint's staging directory.</summary>
/// <param name="RelativePath">Normalised, '/'-separated, as it will appear on storage and in the manifest; opened only beneath <paramref name="Staging"/>.</param>
/// <param name="SourcePath">Where the trainer sees it, for messages; never opened.</param>
/// <param name="Size">As reported (validated); a copy that reads another size fails.</param>
public sealed record StagedFile(string RelativePath, string SourcePath, long Size, StagingDirectory Staging);
