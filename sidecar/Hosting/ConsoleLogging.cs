using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// One log format for every long-running mode of the binary (the sidecar, the webhook): a single UTC
/// line per event, so kubectl logs and log shippers read them alike.
/// </summary>
internal static class ConsoleLogging
{
    public static ILoggingBuilder AddSidecarConsole(this ILoggingBuilder logging)
    {
        logging.ClearProviders();
        logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
            o.UseUtcTimestamp = true;
        });
        // Kestrel's and ASP.NET Core's per-request lines would drown the sidecar's own.
        return logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
    }
}
