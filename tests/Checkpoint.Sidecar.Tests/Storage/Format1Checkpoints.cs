using System.Text;
using Checkpoint.Sidecar.Storage;

namespace Checkpoint.Sidecar.Tests.Storage;

/// <summary>
/// Writes checkpoints of format 1 the way sidecars before job-wide checkpoints committed them
/// (<c>&lt;id&gt;.partial</c>, manifest last, rename, LATEST), so tests can show that resume still reads them.
/// </summary>
internal static class Format1Checkpoints
{
    /// <summary>A fresh, empty <c>.partial</c> directory for a checkpoint about to be copied.</summary>
    public static string CreatePartialDirectory(this CheckpointStore store, string checkpointId)
    {
        var partial = store.Layout.PartialDirectory(checkpointId);
        Directory.CreateDirectory(store.Layout.JobDirectory);
        NativeFile.RemoveTree(partial);
        Directory.CreateDirectory(partial);
        return partial;
    }

    /// <summary>Manifest into the partial directory, rename to the final name, then LATEST.</summary>
    /// <returns>The committed directory.</returns>
    public static string Commit(this CheckpointStore store, CheckpointManifest manifest)
    {
        var layout = store.Layout;
        var partial = layout.PartialDirectory(manifest.Id);
        var committed = layout.CommittedDirectory(manifest.Id);
        NativeFile.WriteNewFile(Path.Combine(partial, CheckpointLayout.ManifestFileName), manifest.ToUtf8Json());
        Directory.Move(partial, committed);
        NativeFile.RemoveTree(layout.LatestTempFile);
        NativeFile.WriteNewFile(layout.LatestTempFile, Encoding.UTF8.GetBytes(manifest.Id + "\n"));
        File.Move(layout.LatestTempFile, layout.LatestFile, overwrite: true);
        return committed;
    }
}
