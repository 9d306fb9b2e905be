namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// How one checkpoint's bytes are moved: at what pace (a periodic upload in the background, a
/// preemption flush with everything the pod has) and which files are read back from storage.
/// </summary>
public sealed record CopyPolicy(CopyPace Pace, IReadBackBudget ReadBack)
{
    /// <summary>Full speed; every file read back when <paramref name="readBack"/> (CHECKPOINT_VERIFY=read-back), none otherwise.</summary>
    public static CopyPolicy FullSpeed(bool readBack) => new(CopyPace.FullSpeed(), readBack ? ReadBackBudget.All : ReadBackBudget.None);
}

/// <summary>Decides, file by file as each is on storage, whether it is read back before the commit.</summary>
public interface IReadBackBudget
{
    /// <summary>Called once a file is copied and fsynced.</summary>
    /// <param name="copied">Its manifest entry (hash taken while writing).</param>
    /// <param name="bytesStillToCopy">Bytes of the checkpoint not yet written to storage.</param>
    /// <returns>True: read it back now and compare; false: commit it on the write-side hash and the fsync.</returns>
    bool ShouldReadBack(ManifestFile copied, long bytesStillToCopy);
}

/// <summary>The fixed budgets of CHECKPOINT_VERIFY.</summary>
public sealed class ReadBackBudget(bool readBack) : IReadBackBudget
{
    public static readonly IReadBackBudget All = new ReadBackBudget(true);

    public static readonly IReadBackBudget None = new ReadBackBudget(false);

    public bool ShouldReadBack(ManifestFile copied, long bytesStillToCopy) => readBack;
}
