using System.Globalization;

namespace Checkpoint.Samples.SampleTrainer;

/// <summary>The sample's command line, parsed by hand to keep the sample free of dependencies.</summary>
internal sealed class TrainerArguments
{
    public const string Usage =
        """
        usage: sample-trainer [options]
          --steps N             total training steps (default 200)
          --checkpoint-every N  periodic checkpoint every N steps, 0 turns them off (default 50)
          --step-delay-ms N     sleep after every step, to give a SIGTERM time to land mid-training (default 0)
          --rank R              this process's rank (default: the RANK environment variable, else 0)
          --payload-bytes N     add an opaque file of N bytes to every checkpoint (default 0)
          --socket PATH         the sidecar's socket (default: CHECKPOINT_SOCKET_PATH, else /var/run/checkpoint/sidecar.sock)
          --help                print this text
        """;

    public long Steps { get; private set; } = 200;

    public long CheckpointEvery { get; private set; } = 50;

    public int StepDelayMilliseconds { get; private set; }

    public int? Rank { get; private set; }

    public long PayloadBytes { get; private set; }

    public string? SocketPath { get; private set; }

    public bool ShowHelp { get; private set; }

    /// <exception cref="FormatException">An option is unknown, lacks its value, or has a malformed value.</exception>
    public static TrainerArguments Parse(IReadOnlyList<string> args)
    {
        var parsed = new TrainerArguments();
        for (int i = 0; i < args.Count; i++)
        {
            string option = args[i];
            string? inlineValue = null;
            int equals = option.IndexOf('=', StringComparison.Ordinal);
            if (option.StartsWith("--", StringComparison.Ordinal) && equals > 0)
            {
                inlineValue = option[(equals + 1)..];
                option = option[..equals];
            }

            string Value()
            {
                if (inlineValue is not null)
                {
                    return inlineValue;
                }

                if (i + 1 >= args.Count)
                {
                    throw new FormatException($"option {option} needs a value");
                }

                return args[++i];
            }

            switch (option)
            {
                case "--steps":
                    parsed.Steps = ParseNonNegative(option, Value());
                    break;
                case "--checkpoint-every":
                    parsed.CheckpointEvery = ParseNonNegative(option, Value());
                    break;
                case "--step-delay-ms":
                    parsed.StepDelayMilliseconds = checked((int)ParseNonNegative(option, Value(), int.MaxValue));
                    break;
                case "--rank":
                    parsed.Rank = checked((int)ParseNonNegative(option, Value(), int.MaxValue));
                    break;
                case "--payload-bytes":
                    parsed.PayloadBytes = ParseNonNegative(option, Value());
                    break;
                case "--socket":
                    string socket = Value();
                    parsed.SocketPath = string.IsNullOrWhiteSpace(socket) ? throw new FormatException("option --socket needs a path") : socket;
                    break;
                case "--help" or "-h":
                    parsed.ShowHelp = true;
                    break;
                default:
                    throw new FormatException($"unknown option '{args[i]}'");
            }
        }

        return parsed;
    }

    private static long ParseNonNegative(string option, string value, long max = long.MaxValue)
    {
        if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out long number) || number > max)
        {
            throw new FormatException($"option {option} needs a non-negative integer, got '{value}'");
        }

        return number;
    }
}
