using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Grpc;
using Checkpoint.Sidecar.Interval;
using Checkpoint.Sidecar.Kubernetes;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Reporting;
using Checkpoint.Sidecar.Resume;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;
using Grpc.AspNetCore.Server;
using Grpc.AspNetCore.Server.Model;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Prometheus;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>Wires the sidecar: configuration, the flush domain, gRPC on the Unix socket, HTTP on the metrics port.</summary>
public static class SidecarHost
{
    /// <summary>Optional JSON file with the same keys as the environment variables; the environment wins.</summary>
    public const string ConfigFileVariable = "CHECKPOINT_CONFIG_FILE";

    public static WebApplication Build(string[] args)
    {
        // The host's defaults would watch appsettings.json in the working directory for changes, which on
        // Linux is an inotify watch on every directory beneath the working directory, added as directories
        // appear and re-walked on events: with the working directory "/" (the image sets none) that is the
        // whole file system, the checkpoint share and every pod's step directories included. The sidecar
        // reads no appsettings.json; nothing is watched.
        var builder = WebApplication.CreateSlimBuilder([.. args, "--hostBuilder:reloadConfigOnChange=false"]);
        var configFile = Environment.GetEnvironmentVariable(ConfigFileVariable);
        if (!string.IsNullOrEmpty(configFile))
        {
            if (!File.Exists(configFile))
            {
                throw new FileNotFoundException($"{ConfigFileVariable}: '{configFile}' does not exist");
            }

            builder.Configuration.AddJsonFile(configFile, optional: false, reloadOnChange: false);
        }

        builder.Configuration.AddEnvironmentVariables();
        builder.Logging.AddSidecarConsole();
        builder.Logging.AddFilter("Grpc", LogLevel.Warning);

        ValidateSettings(builder.Configuration);

        var services = builder.Services;
        services.AddOptions<SidecarOptions>().Bind(builder.Configuration).ValidateOnStart();
        services.AddSingleton<IValidateOptions<SidecarOptions>, SidecarOptionsValidator>();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<IHostLifetime, SidecarHostLifetime>();
        services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(2));

        services.AddSingleton(_ => Prometheus.Metrics.NewCustomRegistry());
        services.AddSingleton<CheckpointMetrics>();
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<SidecarOptions>>().Value;
            return new CheckpointLayout(o.StorageDir, o.PodNamespace, o.JobName);
        });
        services.AddSingleton<CheckpointStore>();
        services.AddSingleton(sp => new StagingRoot(
            sp.GetRequiredService<IOptions<SidecarOptions>>().Value.StagingDir, sp.GetRequiredService<ILogger<StagingRoot>>()));
        services.AddSingleton(sp => new FlushRecordStore(sp.GetRequiredService<CheckpointLayout>(), sp.GetRequiredService<ILogger<FlushRecordStore>>()));
        services.AddSingleton<KubernetesConnection>();
        services.AddSingleton<IFlushReporter, FlushRecordReporter>();
        services.AddSingleton<IFlushReporter, PodEventReporter>();
        services.AddSingleton<IFlushReporter, PushgatewayReporter>();
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<SidecarOptions>>().Value;
            return new FlushPlanner(o.GracePeriod, o.SafetyMargin);
        });
        services.AddSingleton<ICheckpointTarget>(sp =>
        {
            var o = sp.GetRequiredService<IOptions<SidecarOptions>>().Value;
            return new SharedDirectoryTarget(
                sp.GetRequiredService<CheckpointLayout>(),
                new CheckpointCopier(o.CopyParallelism, o.CopyBufferBytes, sp.GetRequiredService<TimeProvider>(), o.ReadBack),
                o.PodNameOrHost,
                sp.GetRequiredService<ILogger<SharedDirectoryTarget>>());
        });
        services.AddSingleton<FlushPipeline>();
        services.AddSingleton<ResumeLocator>();

        // Order matters: the store is swept before the coordinator and the server start.
        services.AddSingleton<StartupTasks>();
        services.AddHostedService(sp => sp.GetRequiredService<StartupTasks>());
        services.AddSingleton<FlushCoordinator>();
        services.AddHostedService(sp => sp.GetRequiredService<FlushCoordinator>());
        services.AddHostedService<TerminationSignalHandler>();
        services.AddHostedService<PodWatcher>();
        services.AddSingleton<PodCostAnnotator>();
        services.AddSingleton<IFlushReporter>(sp => sp.GetRequiredService<PodCostAnnotator>());
        services.AddHostedService(sp => sp.GetRequiredService<PodCostAnnotator>());
        services.AddHostedService<TrainersDoneWatcher>();
        services.AddSingleton<CheckpointIntervalAdvisor>();
        services.AddSingleton<IFlushReporter>(sp => sp.GetRequiredService<CheckpointIntervalAdvisor>());
        services.AddHostedService(sp => sp.GetRequiredService<CheckpointIntervalAdvisor>());

        services.AddGrpc(o => o.EnableDetailedErrors = false);
        services.AddOptions<GrpcServiceOptions>().Configure<IOptions<SidecarOptions>>((grpc, sidecar) =>
            grpc.MaxReceiveMessageSize = sidecar.Value.MaxReportBytes);
        // The service's methods are bound by CheckpointServiceBinding, which refuses malformed requests;
        // grpc-dotnet's own binder would bind them a second time.
        services.RemoveAll(typeof(IServiceMethodProvider<>));
        services.AddSingleton<CheckpointGrpcService>();
        services.AddSingleton<IServiceMethodProvider<CheckpointGrpcService>, CheckpointServiceBinding>();
        services.AddSingleton<SocketFile>();
        services.AddOptions<KestrelServerOptions>().Configure<IOptions<SidecarOptions>, SocketFile>((kestrel, sidecar, socket) =>
        {
            SocketLimits.Apply(kestrel.Limits, sidecar.Value.MaxReportBytes);
            socket.PrepareForBind();
            // gRPC only on the socket (HTTP/2); only plain HTTP/1 on the TCP port, so the control
            // plane is never reachable over the network.
            kestrel.ListenUnixSocket(socket.BindPath, listen => listen.Protocols = HttpProtocols.Http2);
            kestrel.ListenAnyIP(sidecar.Value.MetricsPort, listen => listen.Protocols = HttpProtocols.Http1);
        });

        var app = builder.Build();
        app.Use(RequestBodyGate.InvokeAsync);
        app.MapGrpcService<CheckpointGrpcService>();
        app.MapMetrics("/metrics", app.Services.GetRequiredService<CollectorRegistry>());
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", (StartupTasks startup) =>
            startup.IsReady ? Results.Text("ready\n") : Results.Text("starting\n", statusCode: StatusCodes.Status503ServiceUnavailable));
        return app;
    }

    /// <summary>
    /// Checks every setting before anything is built, so a bad one stops the sidecar with all the
    /// problems listed, rather than surfacing from whichever service happens to read options first.
    /// </summary>
    /// <exception cref="OptionsValidationException">One failure per bad setting, each naming it.</exception>
    /// <exception cref="InvalidOperationException">A value that cannot be converted (names the setting).</exception>
    private static void ValidateSettings(IConfiguration configuration)
    {
        var settings = new SidecarOptions();
        configuration.Bind(settings);
        var result = new SidecarOptionsValidator().Validate(Options.DefaultName, settings);
        if (result.Failed)
        {
            throw new OptionsValidationException(Options.DefaultName, typeof(SidecarOptions), result.Failures);
        }
    }
}
