using System.Globalization;

namespace Checkpoint.TrainerSdk;

/// <summary>How <see cref="CheckpointClient.ConnectAsync"/> reaches the sidecar and how the client handles pod termination.</summary>
public sealed class CheckpointClientOptions
{
    /// <summary>The environment variable the sidecar's deployment sets to the socket path.</summary>
    public const string SocketPathEnvironmentVariable = "CHECKPOINT_SOCKET_PATH";

    /// <summary>Where the socket lies when <see cref="SocketPathEnvironmentVariable"/> is not set.</summary>
    public const string DefaultSocketPath = "/var/run/checkpoint/sidecar.sock";

    /// <summary>The environment variable launchers such as torchrun set to the process's rank.</summary>
    public const string RankEnvironmentVariable = "RANK";

    /// <summary>
    /// Creates options from the environment: the socket path from <see cref="SocketPathEnvironmentVariable"/> and the rank from
    /// <see cref="RankEnvironmentVariable"/>.
    /// </summary>
    /// <exception cref="CheckpointException"><see cref="RankEnvironmentVariable"/> is set but is not a non-negative integer.</exception>
    public CheckpointClientOptions()
    {
        string? socketPath = Environment.GetEnvironmentVariable(SocketPathEnvironmentVariable);
        SocketPath = string.IsNullOrWhiteSpace(socketPath) ? DefaultSocketPath : socketPath;
        Rank = RankFromEnvironment();
        Description = string.Create(
            CultureInfo.InvariantCulture,
            $"{Environment.MachineName} pid {Environment.ProcessId} .NET {Environment.Version}");
    }

    /// <summary>Path of the sidecar's Unix domain socket.</summary>
    public string SocketPath { get; set; }

    /// <summary>
    /// This process's rank in the job; unique among the pod's trainers, and the rank whose files a resumed run reads.
    /// </summary>
    public int Rank { get; set; }

    /// <summary>Free-form text about this process for the sidecar's logs and status; defaults to host, process id and runtime.</summary>
    public string Description { get; set; }

    /// <summary>
    /// The exit code the client ends the process with after a preemption (when <see cref="HandleTermination"/> is set).
    /// Defaults to 1, which schedulers such as Run:ai read as "failed, run me again later" rather than "done".
    /// </summary>
    public int PreemptionExitCode { get; set; } = 1;

    /// <summary>
    /// Whether the client owns the process's termination. When set (the default) the client intercepts SIGTERM so the process
    /// survives long enough to dump, tells the sidecar to start the preemption flush, and ends the process with
    /// <see cref="PreemptionExitCode"/> once the preemption checkpoint has an outcome, once its deadline has passed, or at once
    /// if the sidecar cannot be reached. Turn it off to handle termination yourself.
    /// </summary>
    public bool HandleTermination { get; set; } = true;

    /// <summary>
    /// Whether the client attaches again when the attachment breaks, for example because the sidecar container crashed and
    /// was restarted, or was upgraded. When set (the default) training goes on while detached: calls that need the sidecar
    /// fail fast with <see cref="CheckpointErrorCode.Unavailable"/> and say the client is reattaching, while the client
    /// tries again in the background (after 100 ms, doubling up to every 2 s) until the sidecar accepts it or the client is
    /// disposed. The new attachment has a new <see cref="CheckpointClient.TrainerId"/>, and a dump request of the old
    /// attachment is dropped. A SIGTERM while detached (with <see cref="HandleTermination"/>) waits up to 5 s for the
    /// reattachment to tell the sidecar; if the sidecar is not back by then the process exits with
    /// <see cref="PreemptionExitCode"/> at once, as it does when the sidecar cannot be reached. Turn it off to stay
    /// detached for the rest of the process once the attachment is lost.
    /// </summary>
    public bool Reattach { get; set; } = true;

    /// <summary>How long <see cref="CheckpointClient.ConnectAsync"/> waits for the sidecar to accept the attachment.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Ends the process; tests replace it to observe the exit code without dying.</summary>
    internal Action<int> ExitProcess { get; set; } = Environment.Exit;

    /// <summary>Clock for deadlines; tests replace it to fire the preemption watchdog without waiting.</summary>
    internal TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Where the client explains what it is doing around termination; stdout belongs to the trainer.</summary>
    internal TextWriter Log { get; set; } = Console.Error;

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(SocketPath))
        {
            throw new ArgumentException("The sidecar socket path is empty.", nameof(SocketPath));
        }

        if (Rank < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(Rank), Rank, "The rank must not be negative.");
        }

        if (ConnectTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(ConnectTimeout), ConnectTimeout, "The connect timeout must be positive.");
        }
    }

    private static int RankFromEnvironment()
    {
        string? rank = Environment.GetEnvironmentVariable(RankEnvironmentVariable);
        if (string.IsNullOrWhiteSpace(rank))
        {
            return 0;
        }

        // Falling back to 0 on a malformed RANK would let two processes write the same rank folder; refuse instead.
        if (!int.TryParse(rank, NumberStyles.None, CultureInfo.InvariantCulture, out int parsed))
        {
            throw new CheckpointException(
                $"The {RankEnvironmentVariable} environment variable is '{rank}', which is not a non-negative integer. " +
                $"Fix the launcher's environment or set {nameof(CheckpointClientOptions)}.{nameof(Rank)} explicitly.",
                CheckpointErrorCode.InvalidArgument);
        }

        return parsed;
    }
}
