namespace Checkpoint.Sidecar.Injection;

/// <summary>
/// <c>checkpoint-sidecar copy-binary DIR</c>: copies this binary into DIR (a shared emptyDir), so the
/// trainer container can run <c>prestop</c> from its preStop hook. The sidecar image has no shell and
/// no <c>cp</c>, so the init container that does this runs the binary itself.
/// </summary>
internal static class CopyBinaryCommand
{
    public const string Name = "copy-binary";

    public static int Run(string[] args)
    {
        if (args is not [var directory] || directory.StartsWith('-'))
        {
            Console.Error.WriteLine("usage: checkpoint-sidecar copy-binary DIR");
            return 2;
        }

        var source = Environment.ProcessPath;
        if (source is null)
        {
            Console.Error.WriteLine("checkpoint-sidecar copy-binary: cannot tell where this binary is");
            return 1;
        }

        try
        {
            var target = Path.Combine(directory, "checkpoint-sidecar");
            // Copy to a temporary name and rename: a hook never finds a half-written binary.
            var temporary = target + ".tmp";
            File.Copy(source, temporary, overwrite: true);
            File.SetUnixFileMode(temporary, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
                | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
            File.Move(temporary, target, overwrite: true);
            return 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"checkpoint-sidecar copy-binary: {e.Message}");
            return 1;
        }
    }
}
