using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Prometheus;

namespace Checkpoint.Sidecar.Reporting;

/// <summary>
/// Pushes the sidecar's metrics to a Prometheus Pushgateway when a preemption flush has ended: the
/// pod exits moments later, usually before the next scrape, and this is the only way its final
/// figures reach Prometheus. Grouped by namespace, job_name and pod, so each pod's last flush stays.
/// </summary>
internal sealed class PushgatewayReporter(
    IOptions<SidecarOptions> options, CollectorRegistry registry, ILogger<PushgatewayReporter> logger) : IFlushReporter
{
    private static readonly TimeSpan PushTimeout = TimeSpan.FromSeconds(5);

    public const string PushedJob = "checkpoint-sidecar";

    public Task PreemptionStartedAsync(PreemptionStarted started, CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task FlushEndedAsync(FlushReport report, CancellationToken cancellationToken)
    {
        var settings = options.Value;
        if (string.IsNullOrEmpty(settings.PushgatewayUrl) || report.Reason != CheckpointReason.Preemption)
        {
            return;
        }

        // The labels the PodMonitor gives scraped series (namespace, job_name, pod), so the dashboard
        // and the alerts, which filter and group by them, see pushed series too; "job" is the
        // Pushgateway's own grouping label.
        var group = $"metrics/job/{PushedJob}/namespace/{Uri.EscapeDataString(settings.PodNamespace)}" +
            $"/job_name/{Uri.EscapeDataString(settings.JobName)}/pod/{Uri.EscapeDataString(settings.PodNameOrHost)}";
        var url = new Uri(new Uri(settings.PushgatewayUrl.TrimEnd('/') + "/"), group);
        var shown = url.ToString();
        try
        {
            using var body = new MemoryStream();
            await registry.CollectAndExportAsTextAsync(body, cancellationToken).ConfigureAwait(false);
            using var http = new HttpClient { Timeout = PushTimeout };
            using var content = new ByteArrayContent(body.ToArray());
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("text/plain") { CharSet = "utf-8" };
            content.Headers.ContentType.Parameters.Add(new System.Net.Http.Headers.NameValueHeaderValue("version", "0.0.4"));
            using var response = await http.PutAsync(url, content, cancellationToken).ConfigureAwait(false);
            response.EnsureSuccessStatusCode();
            ReportingLog.Pushed(logger, shown);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
        {
            ReportingLog.PushFailed(logger, shown, e.Message);
        }
    }
}
