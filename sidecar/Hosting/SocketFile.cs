using Checkpoint.Sidecar.Configuration;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// Puts the gRPC socket at <see cref="SidecarOptions.SocketPath"/> with mode 0660 from the moment it
/// exists there. bind() creates the file with whatever the umask leaves, so the server binds inside a
/// private directory (0700, <c>&lt;socket&gt;.bind/</c>), and only once the mode is set is the socket
/// renamed into place: a process of another user never finds it more open than 0660.
/// </summary>
internal sealed class SocketFile(IOptions<SidecarOptions> options, ILogger<SocketFile> logger)
{
    /// <summary>Appended to the socket path to name the private directory; the validator counts it in the length limit.</summary>
    public const string BindSuffix = ".bind/s";

    private const UnixFileMode SocketMode =
        UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite;

    private const UnixFileMode PrivateDirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    public string Path => options.Value.SocketPath;

    /// <summary>Where the server binds: a path nobody else can reach yet.</summary>
    public string BindPath => Path + BindSuffix;

    private string PrivateDirectory => System.IO.Path.GetDirectoryName(BindPath)!;

    /// <summary>Removes what a killed sidecar left (the bind would fail on it) and makes the private directory.</summary>
    public void PrepareForBind()
    {
        if (File.Exists(Path))
        {
            File.Delete(Path);
            HostingLog.StaleSocketRemoved(logger, Path);
        }

        if (Directory.Exists(PrivateDirectory))
        {
            Directory.Delete(PrivateDirectory, recursive: true);
        }

        Directory.CreateDirectory(PrivateDirectory, PrivateDirectoryMode);
    }

    /// <summary>The server listens: give the socket its mode, then its name.</summary>
    public void Publish()
    {
        File.SetUnixFileMode(BindPath, SocketMode);
        // rename(2): atomic, and the listening socket keeps working under its new name.
        File.Move(BindPath, Path, overwrite: true);
        Directory.Delete(PrivateDirectory);
    }

    /// <summary>
    /// Removes the socket when the sidecar stops. The runtime deletes the path it bound, which the
    /// rename has emptied; without this a trainer would find a socket nobody answers on.
    /// </summary>
    public void Remove()
    {
        try
        {
            File.Delete(Path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The next sidecar removes it before binding.
        }
    }
}
