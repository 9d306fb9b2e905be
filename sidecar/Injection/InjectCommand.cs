namespace Checkpoint.Sidecar.Injection;

/// <summary>
/// <c>checkpoint-sidecar inject [-f FILE|-] [flags]</c>: reads a YAML stream of manifests, writes it to
/// stdout with the checkpoint sidecar added to every pod template it understands (like
/// <c>istioctl kube-inject</c>). Other kinds pass through; injected templates are left alone.
/// </summary>
internal static class InjectCommand
{
    public const string Name = "inject";

    private const string Usage =
        "usage: checkpoint-sidecar inject [-f FILE|-] [flags]   (reads stdin without -f; writes stdout)\n" + InjectionOptions.Usage;

    /// <returns>0 written; 1 a manifest was refused or unreadable (nothing written); 2 bad usage.</returns>
    public static async Task<int> RunAsync(string[] args, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        if (args is ["-h" or "--help"])
        {
            await stdout.WriteAsync(Usage).ConfigureAwait(false);
            return 0;
        }

        string? file = null;
        InjectionOptions options;
        try
        {
            options = InjectionOptions.Parse(args, (all, i) =>
            {
                if (all[i] is "-f" or "--filename")
                {
                    file = i + 1 < all.Count ? all[i + 1] : throw new ArgumentException($"{all[i]} needs a file name (or - for stdin)");
                    return 2;
                }

                return 0;
            });
        }
        catch (ArgumentException e)
        {
            await stderr.WriteAsync($"checkpoint-sidecar inject: {e.Message}\n{Usage}").ConfigureAwait(false);
            return 2;
        }

        string input;
        try
        {
            input = file is null or "-" ? await stdin.ReadToEndAsync().ConfigureAwait(false) : await File.ReadAllTextAsync(file).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            await stderr.WriteLineAsync($"checkpoint-sidecar inject: {e.Message}").ConfigureAwait(false);
            return 1;
        }

        try
        {
            // All or nothing: a refused document leaves stdout empty, so `inject | kubectl apply` applies nothing.
            var output = ManifestInjector.InjectStream(input, options);
            await stdout.WriteAsync(output).ConfigureAwait(false);
            await stdout.FlushAsync().ConfigureAwait(false);
            return 0;
        }
        catch (InjectionException e)
        {
            await stderr.WriteLineAsync($"checkpoint-sidecar inject: {(file is null or "-" ? "stdin" : file)}: {e.Message}").ConfigureAwait(false);
            return 1;
        }
    }
}
