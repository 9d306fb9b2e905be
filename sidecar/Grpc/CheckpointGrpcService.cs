using Checkpoint.Protos.V1;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Interval;
using Checkpoint.Sidecar.Resume;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Domain = Checkpoint.Sidecar.Flush;

namespace Checkpoint.Sidecar.Grpc;

/// <summary>
/// Translates checkpoint.v1 messages to the flush domain and back; the logic lives in
/// <see cref="FlushCoordinator"/> and <see cref="ResumeLocator"/>.
/// </summary>
internal sealed class CheckpointGrpcService(
    FlushCoordinator coordinator, ResumeLocator resume, FlushPlanner planner, CheckpointIntervalAdvisor interval,
    IHostApplicationLifetime lifetime)
    : CheckpointService.CheckpointServiceBase
{
    public override async Task Attach(AttachRequest request, IServerStreamWriter<SidecarCommand> responseStream, ServerCallContext context)
    {
        var trainer = Translate(() => coordinator.Attach(request.Rank, request.Description, CallerProcess.Of(context), request.WorldSize, request.WorldId));
        // Host shutdown must end held streams, or it waits for them until its timeout.
        using var ended = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, lifetime.ApplicationStopping);
        try
        {
            var attached = new Attached { TrainerId = trainer.Id, GracePeriod = Duration.FromTimeSpan(planner.GracePeriod) };
            if (interval.Current is { } recommended)
            {
                attached.RecommendedInterval = Duration.FromTimeSpan(recommended);
            }

            await responseStream.WriteAsync(new SidecarCommand { Attached = attached }, ended.Token).ConfigureAwait(false);

            await foreach (var command in trainer.Commands.Reader.ReadAllAsync(ended.Token).ConfigureAwait(false))
            {
                await responseStream.WriteAsync(new SidecarCommand { Dump = ToMessage(command) }, ended.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (ended.IsCancellationRequested)
        {
            // The trainer closed its stream or exited.
        }
        finally
        {
            coordinator.Detach(trainer.Id);
        }
    }

    public override Task<BeginCheckpointResponse> BeginCheckpoint(BeginCheckpointRequest request, ServerCallContext context)
    {
        var reason = request.Reason switch
        {
            Protos.V1.CheckpointReason.Periodic or Protos.V1.CheckpointReason.Unspecified => Domain.CheckpointReason.Periodic,
            Protos.V1.CheckpointReason.Manual => Domain.CheckpointReason.Manual,
            Protos.V1.CheckpointReason.Preemption => Domain.CheckpointReason.Preemption,
            _ => throw new RpcException(new Status(StatusCode.InvalidArgument,
                $"reason {request.Reason} cannot be asked for; use PERIODIC, MANUAL, or PREEMPTION with a deadline for a job-wide preemption checkpoint")),
        };
        DateTimeOffset? deadline = request.Deadline is { } due ? due.ToDateTimeOffset() : null;
        var command = Translate(() => coordinator.BeginCheckpoint(request.TrainerId, request.Step, reason, CallerProcess.Of(context), deadline));
        return Task.FromResult(new BeginCheckpointResponse { Dump = ToMessage(command) });
    }

    public override Task<ReportDumpResponse> ReportDump(ReportDumpRequest request, ServerCallContext context)
    {
        var (reported, expected) = Translate(() => coordinator.Report(
            request.TrainerId, request.CheckpointId, request.Step, request.Files, request.Metadata, CallerProcess.Of(context)));
        return Task.FromResult(new ReportDumpResponse
        {
            CheckpointId = request.CheckpointId,
            RanksReported = reported,
            RanksExpected = expected,
        });
    }

    public override async Task<Protos.V1.CheckpointOutcome> WaitForCheckpoint(WaitForCheckpointRequest request, ServerCallContext context)
    {
        var outcome = await Translate(() => coordinator.WaitAsync(request.CheckpointId, context.CancellationToken)).ConfigureAwait(false);
        var message = new Protos.V1.CheckpointOutcome
        {
            CheckpointId = outcome.CheckpointId,
            Status = outcome.Status switch
            {
                Domain.CheckpointStatus.Committed => Protos.V1.CheckpointStatus.Committed,
                Domain.CheckpointStatus.Failed => Protos.V1.CheckpointStatus.Failed,
                _ => Protos.V1.CheckpointStatus.Superseded,
            },
            Directory = outcome.Directory ?? "",
            Step = outcome.Step ?? 0,
            Error = outcome.Error ?? "",
        };
        message.MissingRanks.Add(outcome.MissingRanks);
        if (outcome.Timings is { } timings)
        {
            message.Timings = ToMessage(timings);
        }

        // The newest the sidecar knows, not the one of that checkpoint: a trainer following it takes the latest.
        if (interval.Current is { } recommended)
        {
            message.RecommendedInterval = Duration.FromTimeSpan(recommended);
        }

        return message;
    }

    public override Task<NotifyTerminationResponse> NotifyTermination(NotifyTerminationRequest request, ServerCallContext context)
    {
        var source = request.Source switch
        {
            Protos.V1.TerminationSource.PrestopHook => Domain.TerminationSource.PreStopHook,
            Protos.V1.TerminationSource.TrainerSignal => Domain.TerminationSource.TrainerNotice,
            _ => string.IsNullOrEmpty(request.TrainerId) ? Domain.TerminationSource.PreStopHook : Domain.TerminationSource.TrainerNotice,
        };
        if (request.TrainerId.Length > 0)
        {
            Translate(() => coordinator.RefuseImpersonation(request.TrainerId, CallerProcess.Of(context)));
        }

        var ticket = Translate(() => coordinator.Terminate(source));
        var response = new NotifyTerminationResponse { CheckpointId = ticket.CheckpointId ?? "" };
        if (ticket.Deadline is { } deadline)
        {
            response.Deadline = Timestamp.FromDateTimeOffset(deadline);
        }

        return Task.FromResult(response);
    }

    public override async Task<GetLatestCheckpointResponse> GetLatestCheckpoint(GetLatestCheckpointRequest request, ServerCallContext context)
    {
        Storage.CommittedCheckpoint? latest;
        try
        {
            latest = await resume.FindAsync(context.CancellationToken).ConfigureAwait(false);
        }
        catch (ResumeLookupStalledException e)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, e.Message));
        }

        if (latest is null)
        {
            return new GetLatestCheckpointResponse();
        }

        var info = new CheckpointInfo
        {
            CheckpointId = latest.Id,
            Directory = latest.DirectoryOf(request.Rank),
            Step = latest.Step,
            Reason = CheckpointReasonNames.FromLabel(latest.Reason) is { } reason ? ToMessage(reason) : Protos.V1.CheckpointReason.Unspecified,
            Created = Timestamp.FromDateTimeOffset(latest.Created),
            TotalBytes = latest.TotalBytes,
            WorldSize = latest.WorldSize,
        };
        if (latest.Ranks.TryGetValue(request.Rank, out var rank))
        {
            foreach (var (key, value) in rank.Metadata)
            {
                info.Metadata[key] = value;
            }
        }

        return new GetLatestCheckpointResponse { Checkpoint = info };
    }

    public override Task<GetStatusResponse> GetStatus(GetStatusRequest request, ServerCallContext context)
    {
        var response = new GetStatusResponse
        {
            GracePeriod = Duration.FromTimeSpan(planner.GracePeriod),
            Terminating = coordinator.IsTerminating,
            LastCommittedCheckpointId = coordinator.LastCommittedId ?? "",
        };
        // Not the trainer ids: each is its own process's business.
        response.Trainers.Add(coordinator.Trainers().Select(t => new TrainerInfo { Rank = t.Rank, Description = t.Description }));
        if (coordinator.LastFlush is { } last)
        {
            response.LastFlush = ToMessage(last);
        }

        return Task.FromResult(response);
    }

    /// <summary>Only a process on the Unix socket (a local peer, allowed by its 0660 mode) may start a drill.</summary>
    public override Task<StartDrillResponse> StartDrill(StartDrillRequest request, ServerCallContext context)
    {
        if (context.GetHttpContext().Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionSocketFeature>()?.Socket
            is not { AddressFamily: System.Net.Sockets.AddressFamily.Unix })
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, "a drill may only be started over the sidecar's Unix socket"));
        }

        var ticket = Translate(coordinator.BeginDrill);
        return Task.FromResult(new StartDrillResponse
        {
            CheckpointId = ticket.CheckpointId,
            TriggeredAt = Timestamp.FromDateTimeOffset(ticket.TriggeredAt),
            Deadline = Timestamp.FromDateTimeOffset(ticket.Deadline),
            GracePeriod = Duration.FromTimeSpan(ticket.GracePeriod),
            SafetyMargin = Duration.FromTimeSpan(ticket.SafetyMargin),
        });
    }

    private static DumpRequest ToMessage(DumpCommand command)
    {
        var message = new DumpRequest
        {
            CheckpointId = command.CheckpointId,
            Reason = ToMessage(command.Reason),
            StagingDir = command.StagingDirectory,
            Drill = command.Drill,
        };
        if (command.Deadline is { } deadline)
        {
            message.Deadline = Timestamp.FromDateTimeOffset(deadline);
        }

        return message;
    }

    private static Protos.V1.FlushTimings ToMessage(Domain.FlushTimings t) => new()
    {
        CheckpointId = t.CheckpointId,
        Reason = ToMessage(t.Reason),
        Notify = Duration.FromTimeSpan(t.Notify),
        Dump = Duration.FromTimeSpan(t.Dump),
        Copy = Duration.FromTimeSpan(t.Copy),
        Verify = Duration.FromTimeSpan(t.Verify),
        Commit = Duration.FromTimeSpan(t.Commit),
        Total = Duration.FromTimeSpan(t.Total),
        Budget = Duration.FromTimeSpan(t.Budget),
        BudgetUsedRatio = t.BudgetUsedRatio,
        Bytes = t.Bytes,
        CommitWait = Duration.FromTimeSpan(t.CommitWait),
    };

    private static Protos.V1.CheckpointReason ToMessage(Domain.CheckpointReason reason) => reason switch
    {
        Domain.CheckpointReason.Preemption => Protos.V1.CheckpointReason.Preemption,
        Domain.CheckpointReason.Periodic => Protos.V1.CheckpointReason.Periodic,
        _ => Protos.V1.CheckpointReason.Manual,
    };

    private static void Translate(Action call) => Translate(() =>
    {
        call();
        return true;
    });

    /// <summary>Domain refusals become gRPC statuses whose message says what was wrong.</summary>
    private static T Translate<T>(Func<T> call)
    {
        try
        {
            return call();
        }
        catch (FlushRequestException e)
        {
            var code = e.Error switch
            {
                FlushRequestError.InvalidArgument => StatusCode.InvalidArgument,
                FlushRequestError.NotFound => StatusCode.NotFound,
                FlushRequestError.AlreadyExists => StatusCode.AlreadyExists,
                FlushRequestError.ResourceExhausted => StatusCode.ResourceExhausted,
                FlushRequestError.PermissionDenied => StatusCode.PermissionDenied,
                _ => StatusCode.FailedPrecondition,
            };
            throw new RpcException(new Status(code, e.Message));
        }
    }
}
