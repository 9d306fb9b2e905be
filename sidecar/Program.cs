using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Hosting;
using Checkpoint.Sidecar.Injection;
using Microsoft.Extensions.Options;

// The sidecar runs in Linux containers and relies on POSIX calls (fsync, posix_fadvise, signals).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace Checkpoint.Sidecar;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args is [PreStopCommand.Name, .. var rest])
        {
            return await PreStopCommand.RunAsync(rest).ConfigureAwait(false);
        }

        if (args is [DrillCommand.Name, .. var drillArgs])
        {
            return await DrillCommand.RunAsync(drillArgs, Console.Out, Console.Error).ConfigureAwait(false);
        }

        if (args is [InjectCommand.Name, .. var injectArgs])
        {
            return await InjectCommand.RunAsync(injectArgs, Console.In, Console.Out, Console.Error).ConfigureAwait(false);
        }

        if (args is [WebhookCommand.Name, .. var webhookArgs])
        {
            return await WebhookCommand.RunAsync(webhookArgs).ConfigureAwait(false);
        }

        if (args is [CopyBinaryCommand.Name, .. var copyArgs])
        {
            return CopyBinaryCommand.Run(copyArgs);
        }

        // list, verify, inspect, prune, version, help; any other bare word is a usage error (other commands go above).
        if (Operations.OperatorCommands.Handles(args))
        {
            return Operations.OperatorCommands.Run(args);
        }

        WebApplication app;
        try
        {
            app = SidecarHost.Build(args);
        }
        catch (OptionsValidationException e)
        {
            return ConfigurationError(string.Join(Environment.NewLine, e.Failures.Select(f => "  " + f)));
        }
        catch (Exception e) when (e is InvalidOperationException or FileNotFoundException or InvalidDataException or FormatException)
        {
            // A value that cannot even be parsed (CHECKPOINT_KEEP=abc), or a missing or malformed JSON file.
            return ConfigurationError("  " + e.Message);
        }

        await app.RunAsync().ConfigureAwait(false);
        return Environment.ExitCode;
    }

    private static int ConfigurationError(string details)
    {
        Console.Error.WriteLine("checkpoint-sidecar: invalid configuration; not starting:");
        Console.Error.WriteLine(details);
        return 2;
    }
}
