namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// Checks the file list of a trainer's report. Reports are untrusted input: a path must not escape
/// the staging directory (absolute, '..', or a symlink pointing out), must name a regular file, and
/// must appear once.
/// </summary>
public static class StagingValidator
{
    /// <param name="stagingDirectory">The checkpoint's staging directory (absolute).</param>
    /// <param name="alreadyReported">Relative paths other ranks reported for the same checkpoint.</param>
    /// <exception cref="InvalidReportException">Names the first offending file.</exception>
    public static IReadOnlyList<StagedFile> Validate(
        string stagingDirectory, IReadOnlyList<string> reportedPaths, IReadOnlySet<string> alreadyReported)
    {
        if (reportedPaths.Count == 0)
        {
            throw new InvalidReportException("", "the report lists no files");
        }

        var stagingRoot = RealPath(stagingDirectory);
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

            var lexical = Path.Combine(stagingDirectory, relative);
            string real;
            try
            {
                real = Path.GetFullPath(lexical);
                real = ResolveSymlinks(real, stagingRoot, reported);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new InvalidReportException(reported, $"cannot be read: {StorageErrors.Reason(e)}");
            }

            if (!IsInside(real, stagingRoot))
            {
                throw new InvalidReportException(reported, "leads out of the staging directory through a symlink");
            }

            switch (KindOf(real, reported))
            {
                case FileKind.Regular:
                    break;
                case FileKind.Missing:
                    throw new InvalidReportException(reported, "does not exist in the staging directory");
                case FileKind.Directory:
                    throw new InvalidReportException(reported, "is a directory; list the files in it");
                default:
                    throw new InvalidReportException(reported, "is not a regular file (device, FIFO or socket)");
            }

            files.Add(new StagedFile(relative, real, SizeOf(real, reported), stagingRoot));
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
    /// Follows every symlink on the way from the staging root to the file, so an intermediate
    /// directory that links elsewhere is caught as well as a linked file.
    /// </summary>
    private static string ResolveSymlinks(string path, string stagingRoot, string reported)
    {
        var info = new FileInfo(path);
        var directory = info.Directory is { } parent ? RealPath(parent.FullName) : stagingRoot;
        var candidate = Path.Combine(directory, info.Name);
        if (NativeFile.GetKind(candidate) == FileKind.Symlink)
        {
            var target = new FileInfo(candidate).ResolveLinkTarget(returnFinalTarget: true)
                ?? throw new InvalidReportException(reported, "is a symlink that cannot be resolved");
            return Path.Combine(RealPath(Path.GetDirectoryName(target.FullName)!), target.Name);
        }

        return candidate;
    }

    private static string RealPath(string directory)
    {
        var info = new DirectoryInfo(directory);
        if (info.LinkTarget is not null)
        {
            var target = info.ResolveLinkTarget(returnFinalTarget: true);
            return target is null ? info.FullName : RealPath(target.FullName);
        }

        var parent = info.Parent;
        return parent is null ? info.FullName : Path.Combine(RealPath(parent.FullName), info.Name);
    }

    private static bool IsInside(string path, string root) =>
        path.StartsWith(root.EndsWith('/') ? root : root + "/", StringComparison.Ordinal);
}
