using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// The published binary's <c>inject</c> on real files and pipes, and its <c>webhook</c> over real HTTPS
/// with a throwaway certificate: the webhook's JSON Patch, applied to the pod, gives what inject gives.
/// </summary>
public sealed class InjectorProcessTests : IDisposable
{
    private const string Image = "registry.example.com/platform/checkpoint-sidecar:0.2.0";

    private static readonly string Golden = Path.Combine(RepoPaths.Root, "tests", "Checkpoint.Sidecar.Tests", "Injection", "golden");

    private readonly string _directory = Directory.CreateTempSubdirectory("injector-").FullName;

    /// <summary>A Job's pod as the API server hands it to webhooks: defaulted, with the ServiceAccount plugin's token volume.</summary>
    private const string Pod = """
        {
          "apiVersion": "v1", "kind": "Pod",
          "metadata": {
            "generateName": "train-llm-",
            "labels": { "batch.kubernetes.io/job-name": "train-llm", "checkpoint-sidecar/inject": "true" }
          },
          "spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 90, "serviceAccountName": "checkpoint-sidecar",
            "containers": [ {
              "name": "trainer", "image": "registry.example.com/team/trainer:latest",
              "volumeMounts": [ { "name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true } ]
            }, {
              "name": "log-shipper", "image": "registry.example.com/infra/shipper:1",
              "volumeMounts": [ { "name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true } ]
            } ],
            "volumes": [ { "name": "kube-api-access-abcde", "projected": { "defaultMode": 420, "sources": [
              { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } },
              { "configMap": { "name": "kube-root-ca.crt", "items": [ { "key": "ca.crt", "path": "ca.crt" } ] } } ] } } ]
          }
        }
        """;

    [Fact]
    public async Task Inject_File_WritesTheGoldenOutput_AndAgainChangesNothing()
    {
        var once = await RunAsync(["inject", "-f", Path.Combine(Golden, "job.in.yaml"), "--image", Image]);
        Assert.True(once.ExitCode == 0, once.ToString());
        Assert.Equal(await File.ReadAllTextAsync(Path.Combine(Golden, "job.out.yaml")), once.Stdout);
        Assert.Equal("", once.Stderr);

        // From stdin ("-f -" and no -f at all), as in `kubectl get ... -o yaml | checkpoint-sidecar inject`.
        var twice = await RunAsync(["inject", "-f", "-", "--image", Image], stdin: once.Stdout);
        Assert.True(twice.ExitCode == 0, twice.ToString());
        Assert.Equal(once.Stdout, twice.Stdout);
        var piped = await RunAsync(["inject", "--image", Image], stdin: once.Stdout);
        Assert.Equal(once.Stdout, piped.Stdout);
    }

    [Fact]
    public async Task Inject_RefusedDocument_Exits1_NamesIt_AndWritesNothing()
    {
        var file = Path.Combine(_directory, "jobs.yaml");
        await File.WriteAllTextAsync(file, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n" +
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: two}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n" +
            "      containers: [{name: a, image: a}, {name: b, image: b}]\n");
        var result = await RunAsync(["inject", "-f", file]);
        Assert.Equal(1, result.ExitCode);
        Assert.Equal("", result.Stdout);
        Assert.Contains($"{file}: document 2 (Job/two) at spec.template.spec.containers: which container is the trainer is ambiguous (a, b)", result.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--mode", "sideways")]
    [InlineData("--no-such-flag", "x")]
    public async Task Inject_BadFlag_Exits2WithUsage(string flag, string value)
    {
        var result = await RunAsync(["inject", flag, value], stdin: "");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("usage: checkpoint-sidecar inject", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Webhook_OverHttps_PatchGivesWhatInjectGives()
    {
        var (certPath, keyPath, certificate) = SelfSignedCertificate();
        var port = TestDirectories.FreeTcpPort();
        await using var webhook = ObservedProcess.Start("webhook", RepoPaths.SidecarBinary,
            ["webhook", "--tls-cert", certPath, "--tls-key", keyPath, "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
             "--image", Image, "--trainer-container", "trainer"],
            new Dictionary<string, string>());
        await webhook.WaitForLineAsync("injector ready");

        using var handler = new HttpClientHandler
        {
            // Trust exactly the throwaway certificate, as the API server trusts the caBundle.
            ServerCertificateCustomValidationCallback = (_, presented, _, _) => presented is not null && presented.Thumbprint == certificate.Thumbprint,
        };
        using var client = new HttpClient(handler) { BaseAddress = new Uri($"https://localhost:{port}") };
        Assert.Equal("ok\n", await client.GetStringAsync(new Uri("/healthz", UriKind.Relative)));

        var review = $$"""
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
              "uid": "7f0b2d1e", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"},
              "namespace": "training", "operation": "CREATE", "object": {{Pod}} } }
            """;
        using var response = await client.PostAsync(new Uri("/mutate", UriKind.Relative), new StringContent(review, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var answer = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["response"]!;
        Assert.Equal("7f0b2d1e", answer["uid"]!.GetValue<string>());
        Assert.True(answer["allowed"]!.GetValue<bool>());
        Assert.Equal("JSONPatch", answer["patchType"]!.GetValue<string>());
        var patch = JsonNode.Parse(Convert.FromBase64String(answer["patch"]!.GetValue<string>()))!.AsArray();
        var patched = JsonPatchDocument.Apply(JsonNode.Parse(Pod)!, patch);

        // inject on the same pod (JSON is YAML), read back through KubernetesClient's own models.
        var injected = await RunAsync(["inject", "--image", Image, "--trainer-container", "trainer"], stdin: Pod);
        Assert.True(injected.ExitCode == 0, injected.ToString());
        var fromWebhook = KubernetesJson.Deserialize<V1Pod>(patched.ToJsonString());
        var fromInject = KubernetesYaml.Deserialize<V1Pod>(injected.Stdout, strict: true);
        Assert.Equal(KubernetesJson.Serialize(fromInject), KubernetesJson.Serialize(fromWebhook));
        Assert.Contains(fromWebhook.Spec.InitContainers, c => c.Name == "checkpoint-sidecar" && c.RestartPolicy == "Always");
        Assert.All(fromWebhook.Spec.Containers, c => Assert.DoesNotContain(c.VolumeMounts ?? [], m => m.Name.StartsWith("kube-api-access-", StringComparison.Ordinal)));
        Assert.Equal(false, fromWebhook.Spec.AutomountServiceAccountToken);

        // A pod that cannot be injected is denied, with the reason.
        var clash = review.Replace("\"name\": \"log-shipper\"", "\"name\": \"checkpoint-sidecar\"", StringComparison.Ordinal);
        using var denied = await client.PostAsync(new Uri("/mutate", UriKind.Relative), new StringContent(clash, Encoding.UTF8, "application/json"));
        var deniedAnswer = JsonNode.Parse(await denied.Content.ReadAsStringAsync())!["response"]!;
        Assert.False(deniedAnswer["allowed"]!.GetValue<bool>());
        Assert.Contains("already named 'checkpoint-sidecar'", deniedAnswer["status"]!["message"]!.GetValue<string>(), StringComparison.Ordinal);

        // Not an AdmissionReview: 400, and the webhook keeps serving.
        using var bad = await client.PostAsync(new Uri("/mutate", UriKind.Relative), new StringContent("{}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal("ok\n", await client.GetStringAsync(new Uri("/healthz", UriKind.Relative)));
    }

    [Fact]
    public async Task Webhook_WithoutCertificate_Exits2()
    {
        var result = await RunAsync(["webhook", "--port", "8443"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--tls-cert and --tls-key are required", result.Stderr, StringComparison.Ordinal);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private (string CertPath, string KeyPath, X509Certificate2 Certificate) SelfSignedCertificate()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
        var certPath = Path.Combine(_directory, "tls.crt");
        var keyPath = Path.Combine(_directory, "tls.key");
        File.WriteAllText(certPath, certificate.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return (certPath, keyPath, certificate);
    }

    private sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
    }

    private static async Task<Result> RunAsync(string[] arguments, string? stdin = null)
    {
        var info = new ProcessStartInfo(RepoPaths.SidecarBinary)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
        }

        process.StandardInput.Close();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return new Result(process.ExitCode, await stdout, await stderr);
    }
}
