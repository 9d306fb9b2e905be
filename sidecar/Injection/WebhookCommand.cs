using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Checkpoint.Sidecar.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Checkpoint.Sidecar.Injection;

/// <summary>
/// <c>checkpoint-sidecar webhook --tls-cert F --tls-key F [--port 8443] [inject flags]</c>: the
/// mutating admission webhook. POST /mutate takes an AdmissionReview of a Pod and answers with the
/// JSON Patch of the same mutation <c>inject</c> makes; GET /healthz for probes. The certificate is
/// re-read when its file changes (cert-manager renews it in place through the mounted Secret).
/// </summary>
internal static class WebhookCommand
{
    public const string Name = "webhook";

    /// <summary>An AdmissionReview carries one pod; etcd refuses objects over 1.5 MiB anyway.</summary>
    private const long MaxRequestBytes = 3 * 1024 * 1024;

    private const string Usage =
        "usage: checkpoint-sidecar webhook --tls-cert FILE --tls-key FILE [--port 8443] [inject flags]\n" + InjectionOptions.Usage;

    public static async Task<int> RunAsync(string[] args)
    {
        string? certPath = null, keyPath = null;
        var port = 8443;
        InjectionOptions options;
        try
        {
            options = InjectionOptions.Parse(args, (all, i) =>
            {
                var value = i + 1 < all.Count ? all[i + 1] : throw new ArgumentException($"{all[i]} needs a value");
                switch (all[i])
                {
                    case "--tls-cert":
                        certPath = value;
                        return 2;
                    case "--tls-key":
                        keyPath = value;
                        return 2;
                    case "--port":
                        port = int.TryParse(value, out var p) && p is > 0 and < 65536 ? p : throw new ArgumentException($"--port must be 1-65535, not '{value}'");
                        return 2;
                    default:
                        return 0;
                }
            });
            if (certPath is null || keyPath is null)
            {
                throw new ArgumentException("--tls-cert and --tls-key are required (the API server calls webhooks over HTTPS only)");
            }
        }
        catch (ArgumentException e)
        {
            await Console.Error.WriteAsync($"checkpoint-sidecar webhook: {e.Message}\n{Usage}").ConfigureAwait(false);
            return 2;
        }

        var certificates = new ReloadingCertificate(certPath, keyPath);
        try
        {
            certificates.Current();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            await Console.Error.WriteLineAsync($"checkpoint-sidecar webhook: cannot load the certificate {certPath} / {keyPath}: {e.Message}").ConfigureAwait(false);
            return 2;
        }

        var builder = WebApplication.CreateSlimBuilder(["--hostBuilder:reloadConfigOnChange=false"]);
        builder.Logging.AddSidecarConsole();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = MaxRequestBytes;
            kestrel.ListenAnyIP(port, listen =>
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(https => https.ServerCertificateSelector = (_, _) => certificates.Current());
            });
        });

        var app = builder.Build();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Checkpoint.Sidecar.Injection.Webhook");
        certificates.Logger = logger;
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapPost("/mutate", (RequestDelegate)(async context =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body, context.RequestAborted).ConfigureAwait(false);
            byte[] response;
            try
            {
                var (answer, outcome, message) = AdmissionReviewHandler.Review(body.GetBuffer().AsMemory(0, (int)body.Length), options);
                response = answer;
                if (outcome == AdmissionOutcome.Refused)
                {
                    InjectionLog.Refused(logger, message);
                }
                else
                {
                    var outcomeText = outcome.ToString();
                    InjectionLog.Reviewed(logger, message, outcomeText);
                }
            }
            catch (JsonException e)
            {
                var problem = e.Message;
                InjectionLog.BadRequest(logger, problem);
                context.Response.StatusCode = StatusCodes.Status400BadRequest;
                await context.Response.WriteAsync("not an AdmissionReview: " + problem + "\n", context.RequestAborted).ConfigureAwait(false);
                return;
            }

            context.Response.ContentType = "application/json";
            await context.Response.Body.WriteAsync(response, context.RequestAborted).ConfigureAwait(false);
        }));

        var mode = options.Mode.ToString();
        app.Lifetime.ApplicationStarted.Register(() => InjectionLog.Ready(logger, port, options.Image, mode));
        await app.RunAsync().ConfigureAwait(false);
        return 0;
    }

    /// <summary>The serving certificate, loaded again when the certificate file's modification time changes.</summary>
    private sealed class ReloadingCertificate(string certPath, string keyPath)
    {
        private readonly Lock _lock = new();
        private X509Certificate2? _certificate;
        private DateTime _loadedStamp;

        public ILogger? Logger { get; set; }

        public X509Certificate2 Current()
        {
            var stamp = File.GetLastWriteTimeUtc(certPath);
            lock (_lock)
            {
                if (_certificate is null || stamp != _loadedStamp)
                {
                    // PEM files as a kubernetes.io/tls Secret holds them (tls.crt, tls.key).
                    using var pem = X509Certificate2.CreateFromPemFile(certPath, keyPath);
                    // Kestrel wants a certificate whose key it can use on Linux: export and re-import.
                    _certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
                    _loadedStamp = stamp;
                    if (Logger is { } logger)
                    {
                        var notAfter = _certificate.NotAfter.ToUniversalTime();
                        InjectionLog.CertificateLoaded(logger, certPath, notAfter);
                    }
                }

                return _certificate;
            }
        }
    }
}
