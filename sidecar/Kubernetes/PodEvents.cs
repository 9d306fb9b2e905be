namespace Checkpoint.Sidecar.Kubernetes;

/// <summary>
/// The one shape of an Event on the sidecar's pod, whoever reports it (flush reports, the grace
/// period advice): attached to this pod instance by its uid, from the checkpoint-sidecar component,
/// with a generated name so each report is its own Event.
/// </summary>
internal static class PodEvents
{
    public const string Component = "checkpoint-sidecar";

    public static KubernetesEvent ForPod(KubernetesConnection connection, DateTimeOffset now, string reason, string type, string message) => new(
        new KubernetesEventMetadata(connection.PodName + ".", connection.Namespace),
        new KubernetesObjectReference("Pod", "v1", connection.PodName, connection.Namespace, connection.PodUid),
        reason,
        message,
        type,
        now,
        now,
        1,
        new KubernetesEventSource(Component, null),
        Component,
        connection.PodName);
}
