using Checkpoint.Sidecar.Configuration;
using k8s;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Kubernetes;

/// <summary>
/// The sidecar's way to its own pod, if it has one: in-cluster service-account config, or a
/// kubeconfig named by KUBECONFIG. Never a default address: guessing localhost:8080 would talk to
/// whatever happens to listen there. <see cref="Client"/> is null when there is no API to talk to,
/// and the log says why once.
/// </summary>
internal sealed class KubernetesConnection : IDisposable
{
    public KubernetesConnection(IOptions<SidecarOptions> options, ILogger<KubernetesConnection> logger)
    {
        var settings = options.Value;
        Namespace = settings.PodNamespace;
        PodName = settings.PodName;
        if (!settings.KubernetesEnabled)
        {
            Unavailable = "CHECKPOINT_KUBERNETES_ENABLED=false";
        }
        else if (string.IsNullOrEmpty(settings.PodName))
        {
            Unavailable = "POD_NAME is not set (set it from the downward API)";
        }
        else
        {
            try
            {
                var config = ClientConfiguration();
                if (config is null)
                {
                    Unavailable = "not running in a cluster and KUBECONFIG names no file";
                }
                else
                {
                    Client = new PodApiClient(config);
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                Unavailable = $"the Kubernetes client configuration is unusable: {e.Message}";
            }
        }

        if (Unavailable is not null)
        {
            KubernetesLog.NoApi(logger, Unavailable);
        }
    }

    public PodApiClient? Client { get; }

    /// <summary>Why there is no client; null when there is one.</summary>
    public string? Unavailable { get; }

    public string Namespace { get; }

    public string PodName { get; }

    /// <summary>Learned from the first read of the pod; Events name it so they attach to this pod instance.</summary>
    public string? PodUid { get; set; }

    public void Dispose() => Client?.Dispose();

    private static KubernetesClientConfiguration? ClientConfiguration()
    {
        if (KubernetesClientConfiguration.IsInCluster())
        {
            return KubernetesClientConfiguration.InClusterConfig();
        }

        var kubeconfig = Environment.GetEnvironmentVariable("KUBECONFIG");
        return !string.IsNullOrEmpty(kubeconfig) && File.Exists(kubeconfig)
            ? KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig)
            : null;
    }
}
