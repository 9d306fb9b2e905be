using System.Globalization;
using Checkpoint.Sidecar.Storage;

namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// Checkpoint ids sort by creation time (retention and resume fall back on that order) and say why
/// the checkpoint was taken: <c>20261129T024500123Z-preemption</c>; a second id in the same
/// millisecond gets <c>-002</c> (zero-padded so that ids keep sorting in order).
/// </summary>
internal sealed class CheckpointIdGenerator(TimeProvider time, CheckpointLayout layout)
{
    private readonly HashSet<string> _issuedThisStamp = new(StringComparer.Ordinal);
    private string _lastStamp = "";

    public string Next(CheckpointReason reason)
    {
        var stamp = time.GetUtcNow().UtcDateTime.ToString("yyyyMMdd'T'HHmmssfff'Z'", CultureInfo.InvariantCulture);
        if (stamp != _lastStamp)
        {
            _lastStamp = stamp;
            _issuedThisStamp.Clear();
        }

        var id = $"{stamp}-{reason.ToLabel()}";
        // Same millisecond, or a directory of that name from an earlier pod with a skewed clock.
        for (var n = 2; _issuedThisStamp.Contains(id) || Directory.Exists(layout.CommittedDirectory(id)); n++)
        {
            id = string.Create(CultureInfo.InvariantCulture, $"{stamp}-{reason.ToLabel()}-{n:D3}");
        }

        _issuedThisStamp.Add(id);
        return id;
    }
}
