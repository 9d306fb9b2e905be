namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// Checks the file list of a trainer's report. Reports are untrusted input: a path must stay inside
/// the checkpoint's staging directory (not absolute, no '..', no symlink anywhere on the way), must
/// name a regular file, and must appear once. Every file is looked up from the directory descriptor
/// the sidecar holds, never by path.
/// </summary>
public static class StagingValidator
{
    private const int ENoEnt = 2;
    private const int EAccess = 13;
    private const int EXDev = 18;
    private const int ENotDir = 20;
    private const int ELoop = 40;

    /// <param name="staging">The checkpoint's staging directory, as the sidecar created and holds it.</param>
    /// <param name="alreadyReported">Relative paths other ranks reported for the same checkpoint.</param>
    /// <exception cref="InvalidReportException">Names the first offending file, or the staging directory itself.</exception>
    public static IReadOnlyList<StagedFile> Validate(
        StagingDirectory staging, IReadOnlyList<string> reportedPaths, IReadOnlySet<string> alreadyReported)
    {
        if (reportedPaths.Count == 0)
        {
            throw new InvalidReportException("", "the report lists no files");
        }

        CheckStillInPlace(staging);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var files = new List<StagedFile>(reportedPaths.Count);
        foreach (var reported in reportedPaths)
        {
            var relative = NormaliseRelative(reported);
            if (!seen.Add(relative) || alreadyReported.Contains(relative))
            {
                throw new InvalidReportException(reported, "is listed more than once");
            }

            if (relative == CheckpointLayout.ManifestFileName)
            {
                throw new InvalidReportException(reported, $"'{CheckpointLayout.ManifestFileName}' is reserved for the checkpoint manifest");
            }

            var status = StatusBeneath(staging, relative, reported);
            switch (status.Kind)
            {
                case FileKind.Regular:
                    break;
                case FileKind.Directory:
                    throw new InvalidReportException(reported, "is a directory; list the files in it");
                default:
                    throw new InvalidReportException(reported, "is not a regular file (device, FIFO or socket)");
            }

            files.Add(new StagedFile(relative, Path.Combine(staging.Path, relative), status.Size, staging));
        }

        return files;
    }

    private static FileKind KindOf(string path, string reported)
    {
        try
        {
            return NativeFile.GetKind(path);
        }
        catch (IOException e)
        {
            throw new InvalidReportException(reported, $"cannot be read: {StorageErrors.Reason(e)}");
        }
    }

    private static long SizeOf(string path, string reported)
    {
        try
        {
            return new FileInfo(path).Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidReportException(reported, $"cannot be read: {StorageErrors.Reason(e)}");
        }
    }

    /// <summary>Rejects absolute paths and '..'; folds '.' and repeated separators.</summary>
    internal static string NormaliseRelative(string reported)
    {
        if (string.IsNullOrWhiteSpace(reported))
        {
            throw new InvalidReportException(reported, "is an empty path");
        }

        if (reported.Contains('\0'))
        {
            throw new InvalidReportException(reported, "contains a NUL character");
        }

        if (reported.StartsWith('/'))
        {
            throw new InvalidReportException(reported, "is an absolute path; paths must be relative to the staging directory");
        }

        var segments = reported.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(s => s != ".").ToArray();
        if (segments.Contains(".."))
        {
            throw new InvalidReportException(reported, "contains '..'; paths must stay inside the staging directory");
        }

        if (segments.Length == 0)
        {
            throw new InvalidReportException(reported, "names the staging directory itself");
        }

        return string.Join('/', segments);
    }

    /// <summary>
    /// A trainer that removes the directory it was given and puts a symlink (or anything else) in
    /// its place has written its files somewhere the sidecar does not read, perhaps to make it read
    /// what the link points at: say so, rather than report its files missing one by one.
    /// </summary>
    private static void CheckStillInPlace(StagingDirectory staging)
    {
        string? replacement;
        try
        {
            replacement = staging.DescribeReplacement();
        }
        catch (IOException e)
        {
            throw InvalidReportException.ForStagingDirectory(staging.Path, $"cannot be checked: {StorageErrors.Reason(e)}");
        }

        if (replacement is not null)
        {
            throw InvalidReportException.ForStagingDirectory(staging.Path,
                $"{replacement}; write into the directory the dump request names, do not remove or replace it");
        }
    }

    private static FileStatus StatusBeneath(StagingDirectory staging, string relative, string reported)
    {
        try
        {
            using var handle = NativeFile.OpenPathBeneath(staging.Handle, relative);
            return NativeFile.Status(handle, relative);
        }
        catch (IOException e)
        {
            throw new InvalidReportException(reported, e.HResult switch
            {
                ENoEnt or ENotDir => "does not exist in the staging directory",
                ELoop => "is reached through a symlink; symlinks are refused, write the file itself",
                EXDev => "leads out of the staging directory",
                EAccess => "cannot be read by the sidecar (permission denied)",
                _ => $"cannot be read: {StorageErrors.Reason(e)}",
            });
        }
    }
}
