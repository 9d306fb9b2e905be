using System.Threading.Channels;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;

namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// The trainer processes attached to this sidecar, the world they declared, and who may speak for
/// each: a trainer id is honoured only from the process that attached it.
/// </summary>
/// <remarks>Not thread-safe: the coordinator reads and changes it under its lock.</remarks>
internal sealed class TrainerRegistry
{
    private readonly Dictionary<string, AttachedTrainer> _trainers = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _firstAttached = NewSignal(completed: false);
    private TaskCompletionSource _noTrainers = NewSignal(completed: true);
    private int _nextTrainer;

    /// <summary>
    /// Part of every trainer id, different in each sidecar process: an id handed out before a
    /// restart must not name a trainer of the new process. Not a secret, so not the crypto RNG,
    /// which would load OpenSSL (~2 MB resident) for nothing.
    /// </summary>
    private readonly string _instance = Random.Shared.Next(0x1000000).ToString("x6", System.Globalization.CultureInfo.InvariantCulture);

    public int Count => _trainers.Count;

    public IReadOnlyCollection<AttachedTrainer> All => _trainers.Values;

    /// <summary>The world the attached trainers declared; for trainers that declared none, size 0 (this pod's ranks are the world).</summary>
    public JobWorld World { get; private set; } = new(0, "");

    /// <summary>Completes when a trainer has attached at least once.</summary>
    public Task FirstAttached => _firstAttached.Task;

    /// <summary>Completes when no trainer is attached (at once if none is).</summary>
    public Task NoneAttached => _noTrainers.Task;

    /// <exception cref="FlushRequestException">The rank or world is not one this sidecar can take.</exception>
    public AttachedTrainer Add(int rank, string description, TrainerPeer? peer, int worldSize, string worldId)
    {
        if (rank < 0)
        {
            throw new FlushRequestException(FlushRequestError.InvalidArgument, $"rank {rank} must be zero or more");
        }

        var world = DeclaredWorld(rank, worldSize, worldId);
        if (_trainers.Values.Any(t => t.Rank == rank))
        {
            throw new FlushRequestException(FlushRequestError.AlreadyExists, $"a trainer with rank {rank} is already attached");
        }

        if (_trainers.Count > 0 && World != world)
        {
            throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                $"rank {rank} declares a world of {world}, but the trainers already attached declared {World}; "
                + "every rank of a job gives the same world_size and world_id");
        }

        World = world;
        var trainer = new AttachedTrainer($"trainer-{_instance}-{++_nextTrainer}-rank-{rank}", rank, UserText.Cap(description), peer);
        _trainers.Add(trainer.Id, trainer);
        if (_noTrainers.Task.IsCompleted)
        {
            _noTrainers = NewSignal(completed: false);
        }

        _firstAttached.TrySetResult();
        return trainer;
    }

    /// <returns>The trainer that left, or null when none of that id was attached.</returns>
    public AttachedTrainer? Remove(string trainerId)
    {
        if (!_trainers.Remove(trainerId, out var trainer))
        {
            return null;
        }

        trainer.Commands.Writer.TryComplete();
        if (_trainers.Count == 0)
        {
            _noTrainers.TrySetResult();
        }

        return trainer;
    }

    /// <summary>The attached trainer of this id, asked for by the process that attached it.</summary>
    /// <param name="caller">The process calling (null: in-process callers).</param>
    /// <exception cref="FlushRequestException">NOT_FOUND, or PERMISSION_DENIED for another process.</exception>
    public AttachedTrainer Require(string trainerId, TrainerPeer? caller)
    {
        if (!_trainers.TryGetValue(trainerId, out var trainer))
        {
            throw new FlushRequestException(FlushRequestError.NotFound,
                $"trainer {UserText.Quote(trainerId)} is not attached; call Attach and keep its stream open");
        }

        RequireSameProcess(trainer, caller);
        return trainer;
    }

    /// <summary>
    /// Refuses a call that names a trainer another process attached. A name nobody attached passes:
    /// NotifyTermination is open to every process on the socket (the preStop hook is one), and a trainer
    /// whose attachment was lost must still be able to announce its SIGTERM.
    /// </summary>
    public void RefuseImpersonation(string trainerId, TrainerPeer caller)
    {
        if (_trainers.TryGetValue(trainerId, out var trainer))
        {
            RequireSameProcess(trainer, caller);
        }
    }

    /// <summary>Trainer id to rank of every trainer attached now: the ranks a checkpoint asked for now waits for.</summary>
    public Dictionary<string, int> Ranks() => _trainers.Values.ToDictionary(t => t.Id, t => t.Rank, StringComparer.Ordinal);

    private static JobWorld DeclaredWorld(int rank, int worldSize, string worldId)
    {
        if (worldSize < 0)
        {
            throw new FlushRequestException(FlushRequestError.InvalidArgument, $"world_size {worldSize} must be zero (a single-pod job) or more");
        }

        if (!JobWorld.IsValidId(worldId))
        {
            throw new FlushRequestException(FlushRequestError.InvalidArgument,
                $"world_id {UserText.Quote(worldId)} must be at most {JobWorld.MaxIdLength} characters of [a-z0-9]");
        }

        if (worldSize == 0 && worldId.Length > 0)
        {
            throw new FlushRequestException(FlushRequestError.InvalidArgument, "world_id is given without world_size; give both, or neither for a single-pod job");
        }

        if (worldSize > 0 && rank >= worldSize)
        {
            throw new FlushRequestException(FlushRequestError.InvalidArgument, $"rank {rank} is outside a world of {worldSize} rank(s) (0..{worldSize - 1})");
        }

        return new JobWorld(worldSize, worldId);
    }

    private static void RequireSameProcess(AttachedTrainer trainer, TrainerPeer? caller)
    {
        if (caller is not null && trainer.Peer is { } attacher && !attacher.IsSameProcessAs(caller))
        {
            throw new FlushRequestException(FlushRequestError.PermissionDenied,
                $"trainer {UserText.Quote(trainer.Id)} (rank {trainer.Rank}) was attached by another process; "
                + "a trainer id is honoured only from the process that attached it");
        }
    }

    private static TaskCompletionSource NewSignal(bool completed)
    {
        var signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (completed)
        {
            signal.SetResult();
        }

        return signal;
    }
}

/// <summary>A trainer process on the other end of an Attach stream.</summary>
internal sealed class AttachedTrainer(string id, int rank, string description, TrainerPeer? peer)
{
    public string Id { get; } = id;

    public int Rank { get; } = rank;

    public string Description { get; } = description;

    /// <summary>The process that attached; null for in-process callers.</summary>
    public TrainerPeer? Peer { get; } = peer;

    /// <summary>Dump requests waiting to be written to the trainer's stream.</summary>
    public Channel<DumpCommand> Commands { get; } = Channel.CreateUnbounded<DumpCommand>(new UnboundedChannelOptions { SingleReader = true });
}
