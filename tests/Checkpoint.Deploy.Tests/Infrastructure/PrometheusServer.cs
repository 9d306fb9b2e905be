using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Checkpoint.Deploy.Tests.Infrastructure;

/// <summary>A real Prometheus server (Debian package prometheus) with a private TSDB, scraping one target every second.</summary>
internal sealed class PrometheusServer : IAsyncDisposable
{
    private readonly DirectoryInfo _dir;
    private readonly HttpClient _http;

    private PrometheusServer(DirectoryInfo dir, ObservedProcess process, int port)
    {
        _dir = dir;
        Process = process;
        BaseUri = new Uri($"http://127.0.0.1:{port}/");
        _http = new HttpClient { BaseAddress = BaseUri, Timeout = TimeSpan.FromSeconds(10) };
    }

    public ObservedProcess Process { get; }

    public Uri BaseUri { get; }

    /// <summary>
    /// Starts Prometheus scraping <paramref name="target"/> (host:port) every second, with the labels
    /// the PodMonitor would add, and loading <paramref name="ruleFiles"/>.
    /// </summary>
    public static Task<PrometheusServer> StartAsync(string target, IReadOnlyDictionary<string, string> labels, IEnumerable<string> ruleFiles) =>
        StartAsync([(target, labels)], ruleFiles);

    /// <summary>
    /// Starts Prometheus scraping every target (host:port) every second, each with its own labels (the
    /// pods of one job: the same namespace and job_name, their own pod), and loading <paramref name="ruleFiles"/>.
    /// </summary>
    /// <param name="honorLabels">Keep the target's own job and instance labels, as a Pushgateway's scrape config must.</param>
    public static async Task<PrometheusServer> StartAsync(
        IEnumerable<(string Target, IReadOnlyDictionary<string, string> Labels)> targets, IEnumerable<string> ruleFiles, bool honorLabels = false)
    {
        var dir = Directory.CreateTempSubdirectory("ckpt-prom-");
        var staticConfigs = string.Concat(targets.Select(t =>
            $"\n      - targets: [\"{t.Target}\"]\n        labels:" +
            string.Concat(t.Labels.Select(kv => $"\n          {kv.Key}: \"{kv.Value}\""))));
        var rules = string.Concat(ruleFiles.Select(f => $"\n  - \"{f}\""));
        var config = $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            rule_files:{rules}
            scrape_configs:
              - job_name: checkpoint-sidecar
                honor_labels: {(honorLabels ? "true" : "false")}
                static_configs:{staticConfigs}
            """;
        var configFile = Path.Combine(dir.FullName, "prometheus.yml");
        await File.WriteAllTextAsync(configFile, config).ConfigureAwait(false);

        var port = TestDirectories.FreeTcpPort();
        var process = ObservedProcess.Start(
            "prometheus",
            Tool.Find("prometheus"),
            [
                "--config.file=" + configFile,
                "--storage.tsdb.path=" + Path.Combine(dir.FullName, "data"),
                "--web.listen-address=127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture),
                "--log.level=info",
            ],
            new Dictionary<string, string>());
        var server = new PrometheusServer(dir, process, port);
        await process.WaitForLineAsync(Regex.Escape("Server is ready to receive web requests.")).ConfigureAwait(false);
        var ready = await server._http.GetAsync(new Uri("-/ready", UriKind.Relative)).ConfigureAwait(false);
        Assert.True(ready.IsSuccessStatusCode, $"/-/ready answered {ready.StatusCode}");
        return server;
    }

    /// <summary>An instant query through the HTTP API; returns the whole response.</summary>
    public async Task<JsonNode> QueryAsync(string promql)
    {
        var response = await _http.GetAsync(new Uri("api/v1/query?query=" + Uri.EscapeDataString(promql), UriKind.Relative)).ConfigureAwait(false);
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync().ConfigureAwait(false))!;
        return body;
    }

    public async Task<JsonNode> GetAsync(string path) =>
        JsonNode.Parse(await _http.GetStringAsync(new Uri(path, UriKind.Relative)).ConfigureAwait(false))!;

    /// <summary>
    /// Polls <paramref name="probe"/> until it returns a value: the query API is the only way to learn
    /// that a scrape or a rule evaluation has happened. Bounded; the failure shows the last answer.
    /// </summary>
    public static async Task<T> UntilAsync<T>(Func<Task<(T? Value, string Last)>> probe, TimeSpan timeout, string what)
        where T : class
    {
        var deadline = DateTime.UtcNow + timeout;
        var last = "";
        while (DateTime.UtcNow < deadline)
        {
            (var value, last) = await probe().ConfigureAwait(false);
            if (value is not null)
            {
                return value;
            }

            await Task.Delay(200).ConfigureAwait(false);
        }

        throw new TimeoutException($"{what} not seen within {timeout}; last answer: {last}");
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await Process.DisposeAsync().ConfigureAwait(false);
        _dir.Delete(recursive: true);
    }
}
