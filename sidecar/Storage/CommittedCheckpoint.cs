namespace Checkpoint.Sidecar.Storage;

/// <summary>A checkpoint directory whose manifest was read and checked.</summary>
public sealed record CommittedCheckpoint(string Directory, CheckpointManifest Manifest)
{
    public string Id => Manifest.Id;
}
