namespace Checkpoint.TestSupport;

/// <summary>Damage a checkpoint on storage the way a bad disk or a stray write would.</summary>
public static class FileDamage
{
    /// <summary>Inverts one bit of a file in place.</summary>
    public static void FlipBit(string path, long offset)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        stream.Position = offset;
        var value = stream.ReadByte();
        stream.Position = offset;
        stream.WriteByte((byte)(value ^ 0x01));
    }
}
