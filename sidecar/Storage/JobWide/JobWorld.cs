namespace Checkpoint.Sidecar.Storage.JobWide;

/// <summary>
/// The torch.distributed world a pod's trainers belong to, as they declared it when attaching: how
/// many ranks the whole job has, and which run of it this is. A checkpoint is committed when shards
/// of the same run cover every rank 0..Size-1.
/// </summary>
/// <param name="Size">Ranks in the whole job, across every pod.</param>
/// <param name="Id">The run; empty when the trainers gave none.</param>
public sealed record JobWorld(int Size, string Id)
{
    public const int MaxIdLength = 32;

    /// <summary>Up to 32 of [a-z0-9]: it becomes part of file names on shared storage.</summary>
    public static bool IsValidId(string id) => id.Length <= MaxIdLength && id.All(c => char.IsAsciiDigit(c) || char.IsAsciiLetterLower(c));

    public override string ToString() => Id.Length == 0 ? $"{Size} rank(s)" : $"{Size} rank(s), run {Id}";
}
