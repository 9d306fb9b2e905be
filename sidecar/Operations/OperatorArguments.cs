namespace Checkpoint.Sidecar.Operations;

/// <summary>
/// The flags of one operator command, parsed strictly: a flag the command does not take, a value
/// missing, or a stray argument is a usage error that names it, never silently ignored.
/// </summary>
internal sealed class OperatorArguments
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _switches = new(StringComparer.Ordinal);

    private OperatorArguments(IReadOnlyList<string> positionals) => Positionals = positionals;

    public IReadOnlyList<string> Positionals { get; }

    /// <param name="arguments">What follows the command's name.</param>
    /// <param name="valueFlags">Flags that take a value (<c>--keep 3</c> or <c>--keep=3</c>).</param>
    /// <param name="switchFlags">Flags that take none (<c>--json</c>).</param>
    /// <param name="maxPositionals">How many bare arguments the command takes.</param>
    /// <exception cref="UsageException">Anything the command does not take.</exception>
    public static OperatorArguments Parse(
        string command, IEnumerable<string> arguments, IReadOnlyCollection<string> valueFlags, IReadOnlyCollection<string> switchFlags, int maxPositionals)
    {
        var positionals = new List<string>();
        var parsed = new OperatorArguments(positionals);
        using var next = arguments.GetEnumerator();
        while (next.MoveNext())
        {
            var argument = next.Current;
            if (!argument.StartsWith('-') || argument == "-")
            {
                if (positionals.Count == maxPositionals)
                {
                    throw new UsageException(maxPositionals == 0
                        ? $"'{command}' takes no argument, but was given {OperatorText.Quote(argument)}"
                        : $"'{command}' takes at most {maxPositionals} argument(s); {OperatorText.Quote(argument)} is one too many");
                }

                positionals.Add(argument);
                continue;
            }

            var equals = argument.IndexOf('=', StringComparison.Ordinal);
            var flag = equals < 0 ? argument : argument[..equals];
            if (valueFlags.Contains(flag))
            {
                string value;
                if (equals >= 0)
                {
                    value = argument[(equals + 1)..];
                }
                else if (next.MoveNext())
                {
                    value = next.Current;
                }
                else
                {
                    throw new UsageException($"{flag} needs a value");
                }

                if (!parsed._values.TryAdd(flag, value))
                {
                    throw new UsageException($"{flag} is given more than once");
                }
            }
            else if (switchFlags.Contains(flag) && equals < 0)
            {
                parsed._switches.Add(flag);
            }
            else if (switchFlags.Contains(flag))
            {
                throw new UsageException($"{flag} takes no value");
            }
            else
            {
                throw new UsageException($"unknown flag {OperatorText.Quote(flag)} for '{command}' (see 'checkpoint-sidecar help')");
            }
        }

        return parsed;
    }

    public string? Value(string flag) => _values.GetValueOrDefault(flag);

    public bool Has(string flag) => _switches.Contains(flag);
}

/// <summary>The command line cannot be run as given; the message names the flag or argument. Exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
