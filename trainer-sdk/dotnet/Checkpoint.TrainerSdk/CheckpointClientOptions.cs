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

    /// <summary>The environment variable launchers such as torchrun set to the number of ranks in the whole job.</summary>
    public const string WorldSizeEnvironmentVariable = "WORLD_SIZE";

    /// <summary>The environment variable the SDKs read a run's world id from when it is not set in code.</summary>
    public const string WorldIdEnvironmentVariable = "CHECKPOINT_WORLD_ID";

    /// <summary>The environment variable that sets <see cref="SocketWaitTimeout"/> in seconds.</summary>
    public const string SocketWaitTimeoutEnvironmentVariable = "CHECKPOINT_CONNECT_TIMEOUT_SECONDS";

    /// <summary>The <see cref="SocketWaitTimeout"/> when <see cref="SocketWaitTimeoutEnvironmentVariable"/> is not set.</summary>
    public static readonly TimeSpan DefaultSocketWaitTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The longest <see cref="WorldId"/> the sidecar accepts.</summary>
    public const int MaxWorldIdLength = 32;

    /// <summary>
    /// Creates options from the environment: the socket path from <see cref="SocketPathEnvironmentVariable"/>, the rank from
    /// <see cref="RankEnvironmentVariable"/>, the world size from <see cref="WorldSizeEnvironmentVariable"/> and the world id
    /// from <see cref="WorldIdEnvironmentVariable"/>.
    /// </summary>
    /// <exception cref="CheckpointException">
    /// <see cref="RankEnvironmentVariable"/> or <see cref="WorldSizeEnvironmentVariable"/> is set but is not a non-negative integer.
    /// </exception>
    public CheckpointClientOptions()
        : this(Environment.GetEnvironmentVariable)
    {
    }

    /// <summary>Creates options from the given environment; tests pass their own instead of changing the process's.</summary>
    internal CheckpointClientOptions(Func<string, string?> environment)
    {
        string? socketPath = environment(SocketPathEnvironmentVariable);
        SocketPath = string.IsNullOrWhiteSpace(socketPath) ? DefaultSocketPath : socketPath;
        Rank = NonNegativeFromEnvironment(environment, RankEnvironmentVariable, nameof(Rank));
        WorldSize = NonNegativeFromEnvironment(environment, WorldSizeEnvironmentVariable, nameof(WorldSize));
        WorldId = environment(WorldIdEnvironmentVariable)?.Trim() ?? string.Empty;
        SocketWaitTimeout = SecondsFromEnvironment(environment, SocketWaitTimeoutEnvironmentVariable, nameof(SocketWaitTimeout)) ?? DefaultSocketWaitTimeout;
        Description = string.Create(
            CultureInfo.InvariantCulture,
            $"{Environment.MachineName} pid {Environment.ProcessId} .NET {Environment.Version}");
    }

    /// <summary>Path of the sidecar's Unix domain socket.</summary>
    public string SocketPath { get; set; }

    /// <summary>
    /// This process's rank in the job (in a multi-pod job its global rank, torch.distributed's rank, not its rank within the
    /// pod); unique among the pod's trainers, and the rank whose files a resumed run reads.
    /// </summary>
    public int Rank { get; set; }

    /// <summary>
    /// The number of ranks in the whole job, across every pod (torch.distributed's world size); 0 (the default when
    /// <see cref="WorldSizeEnvironmentVariable"/> is not set) means a single-pod job, whose world is the ranks attached to this
    /// pod's sidecar. With a world size the sidecar commits a checkpoint only once every rank 0..<c>WorldSize</c>-1, in every
    /// pod, has a verified shard on shared storage, so every rank of every pod resumes from the same one. Sent on every
    /// attachment; <see cref="Rank"/> must be below it.
    /// </summary>
    public int WorldSize { get; set; }

    /// <summary>
    /// Names one run of the world: every rank of the run gives the same value, and a restarted job a new one, so the sidecars
    /// never combine shards of different runs into one checkpoint. Up to <see cref="MaxWorldIdLength"/> characters of
    /// <c>a-z</c> and <c>0-9</c>; empty (the default when <see cref="WorldIdEnvironmentVariable"/> is not set) gives the run no
    /// identity. There is no torch.distributed in .NET: have one rank make it (<see cref="NewWorldId"/>) and share it through
    /// the job's own collective before connecting, or have the launcher set <see cref="WorldIdEnvironmentVariable"/> to a
    /// value that changes with every restart of the job. Sent on every attachment.
    /// </summary>
    public string WorldId { get; set; }

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

    /// <summary>
    /// How long <see cref="CheckpointClient.ConnectAsync"/> waits for the sidecar's socket to appear and accept a connection
    /// before it gives up: with a regular (not native) sidecar container the trainer may start first. Retries after 50 ms,
    /// doubling up to every second. <see cref="TimeSpan.Zero"/> fails at once. Defaults to
    /// <see cref="SocketWaitTimeoutEnvironmentVariable"/>, else <see cref="DefaultSocketWaitTimeout"/>.
    /// </summary>
    public TimeSpan SocketWaitTimeout { get; set; }

    /// <summary>Ends the process; tests replace it to observe the exit code without dying.</summary>
    internal Action<int> ExitProcess { get; set; } = Environment.Exit;

    /// <summary>Clock for deadlines; tests replace it to fire the preemption watchdog without waiting.</summary>
    internal TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Where the client explains what it is doing around termination; stdout belongs to the trainer.</summary>
    internal TextWriter Log { get; set; } = Console.Error;

    /// <summary>A fresh random <see cref="WorldId"/> (32 lowercase hexadecimal characters), for one rank to make and share.</summary>
    /// <returns>A new world id.</returns>
    public static string NewWorldId() => Guid.NewGuid().ToString("N", CultureInfo.InvariantCulture);

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

        if (WorldSize < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(WorldSize), WorldSize, "The world size must not be negative (0: a single-pod job).");
        }

        if (WorldSize > 0 && Rank >= WorldSize)
        {
            throw new ArgumentOutOfRangeException(
                nameof(Rank),
                Rank,
                $"Rank {Rank} is not in a world of {WorldSize} rank{(WorldSize == 1 ? string.Empty : "s")} (0..{WorldSize - 1}); " +
                $"check {nameof(Rank)} and {nameof(WorldSize)} (or the launcher's {RankEnvironmentVariable} and {WorldSizeEnvironmentVariable}).");
        }

        ValidateWorldId();

        if (SocketWaitTimeout < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(SocketWaitTimeout), SocketWaitTimeout, "The socket wait timeout must not be negative (0: fail at once).");
        }

        if (ConnectTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(ConnectTimeout), ConnectTimeout, "The connect timeout must be positive.");
        }
    }

    private void ValidateWorldId()
    {
        string? worldId = WorldId;
        if (worldId is null)
        {
            throw new ArgumentNullException(nameof(WorldId), "The world id must not be null; use an empty string for no run identity.");
        }

        bool valid = worldId.Length <= MaxWorldIdLength;
        foreach (char c in worldId)
        {
            valid &= char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c);
        }

        if (!valid)
        {
            string shown = worldId.Length > 64 ? worldId[..64] + "..." : worldId;
            throw new ArgumentException(
                $"The world id '{shown}' ({worldId.Length} characters) is not up to {MaxWorldIdLength} characters of a-z and 0-9. " +
                $"Set {nameof(CheckpointClientOptions)}.{nameof(WorldId)} (or {WorldIdEnvironmentVariable}) to such a value, the same on " +
                $"every rank of the run, for example one rank's {nameof(CheckpointClientOptions)}.{nameof(NewWorldId)}(); leave it empty for no run identity.",
                nameof(WorldId));
        }
    }

    private static TimeSpan? SecondsFromEnvironment(Func<string, string?> environment, string variable, string option)
    {
        string? value = environment(variable);
        if (string.IsNullOrWhiteSpace(value))
        {
            return null;
        }

        if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds)
            || !double.IsFinite(seconds) || seconds < 0 || seconds > TimeSpan.MaxValue.TotalSeconds / 2)
        {
            throw new CheckpointException(
                $"The {variable} environment variable is '{value}', which is not a number of seconds (0 or more; 0 fails at once). " +
                $"Fix the container's environment or set {nameof(CheckpointClientOptions)}.{option} explicitly.",
                CheckpointErrorCode.InvalidArgument);
        }

        return TimeSpan.FromSeconds(seconds);
    }

    private static int NonNegativeFromEnvironment(Func<string, string?> environment, string variable, string option)
    {
        string? value = environment(variable);
        if (string.IsNullOrWhiteSpace(value))
        {
            return 0;
        }

        // Falling back to 0 on a malformed value would let two processes write the same rank folder (RANK), or make a
        // multi-pod job look like a single pod whose checkpoints commit without the other pods' shards (WORLD_SIZE); refuse.
        if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int parsed))
        {
            throw new CheckpointException(
                $"The {variable} environment variable is '{value}', which is not a non-negative integer. " +
                $"Fix the launcher's environment or set {nameof(CheckpointClientOptions)}.{option} explicitly.",
                CheckpointErrorCode.InvalidArgument);
        }

        return parsed;
    }
}
