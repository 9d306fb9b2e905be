using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Metrics;
using k8s;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Kubernetes;

/// <summary>
/// Reads G (terminationGracePeriodSeconds) from the sidecar's own pod spec: it is not in the
/// downward API, and a configured value can drift from the spec. Outside a cluster, or when the API
/// cannot be reached, the configured CHECKPOINT_GRACE_PERIOD_SECONDS stays in force and the log
/// says so once. Runs in the background so start-up does not wait for the API server.
/// </summary>
internal sealed class PodGracePeriodReader(
    IOptions<SidecarOptions> options,
    FlushPlanner planner,
    CheckpointMetrics metrics,
    ILogger<PodGracePeriodReader> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        metrics.SetGracePeriod(planner.GracePeriod);
        if (!settings.KubernetesEnabled)
        {
            KubernetesLog.Disabled(logger, planner.GracePeriod.TotalSeconds);
            return;
        }

        var config = ClientConfiguration();
        if (config is null || string.IsNullOrEmpty(settings.PodName))
        {
            KubernetesLog.NotInCluster(logger, planner.GracePeriod.TotalSeconds);
            return;
        }

        try
        {
            using var client = new PodApiClient(config);
            var pod = await client.GetPodAsync(settings.PodNamespace, settings.PodName, stoppingToken).ConfigureAwait(false);
            if (pod.Spec?.TerminationGracePeriodSeconds is { } seconds)
            {
                planner.UseGracePeriod(TimeSpan.FromSeconds(seconds));
                metrics.SetGracePeriod(planner.GracePeriod);
                KubernetesLog.GraceFromPod(logger, settings.PodNamespace, settings.PodName, seconds);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            KubernetesLog.ApiUnreachable(logger, settings.PodNamespace, settings.PodName, e.Message, planner.GracePeriod.TotalSeconds);
        }
    }

    /// <summary>
    /// In-cluster service-account config, or a kubeconfig named by KUBECONFIG. Never a default
    /// address: guessing localhost:8080 would talk to whatever happens to listen there.
    /// </summary>
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
