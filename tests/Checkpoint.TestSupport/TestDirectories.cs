using System.Net;
using System.Net.Sockets;

namespace Checkpoint.TestSupport;

/// <summary>A private staging volume, "NFS share" and socket directory for one test.</summary>
public sealed class TestDirectories : IDisposable
{
    public TestDirectories()
    {
        // Short root: a Unix socket path may not exceed 107 bytes.
        Root = Path.Combine(Path.GetTempPath(), "ckpt-it-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(Staging);
        Directory.CreateDirectory(Storage);
        Directory.CreateDirectory(SocketDirectory);
    }

    public string Root { get; }

    public string Staging => Path.Combine(Root, "staging");

    public string Storage => Path.Combine(Root, "storage");

    public string SocketDirectory => Path.Combine(Root, "sock");

    public string SocketPath => Path.Combine(SocketDirectory, "sidecar.sock");

    /// <summary>The job directory under the storage root with the sidecar's default namespace and job name.</summary>
    public static string JobDirectory(string storageRoot) => Path.Combine(storageRoot, "default", "it-job");

    public string JobDirectory() => JobDirectory(Storage);

    public static int FreeTcpPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // A FUSE mount still detaching; the temp directory is cleaned by the OS eventually.
        }
    }
}
