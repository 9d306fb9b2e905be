namespace Checkpoint.IntegrationTests.Infrastructure;

/// <summary>
/// Calls from a process other than the test's: the sidecar tells callers apart by the process the
/// kernel reports for their connection, so a second client inside the test process would not do.
/// </summary>
internal static class OtherProcess
{
    // Python with the trainer SDK's generated code; each line printed is "<method> <status>".
    private const string Script = """
        import sys
        sys.path.insert(0, sys.argv[1])
        import grpc
        from checkpoint_sdk._proto.checkpoint.v1 import checkpoint_pb2 as pb, checkpoint_pb2_grpc as rpc

        socket_path, trainer_id = sys.argv[2], sys.argv[3]
        sidecar = rpc.CheckpointServiceStub(grpc.insecure_channel("unix:" + socket_path))
        calls = [
            ("BeginCheckpoint", lambda: sidecar.BeginCheckpoint(
                pb.BeginCheckpointRequest(trainer_id=trainer_id, step=5, reason=pb.CHECKPOINT_REASON_MANUAL), timeout=30)),
            ("NotifyTermination", lambda: sidecar.NotifyTermination(
                pb.NotifyTerminationRequest(trainer_id=trainer_id, source=pb.TERMINATION_SOURCE_TRAINER_SIGNAL), timeout=30)),
        ]
        for name, call in calls:
            try:
                call()
                print(name, "OK", flush=True)
            except grpc.RpcError as error:
                print(name, error.code().name, flush=True)
        """;

    /// <summary>Another process names <paramref name="trainerId"/> in BeginCheckpoint, then in NotifyTermination.</summary>
    /// <returns>One line per call: the method and the status it got.</returns>
    public static async Task<IReadOnlyList<string>> CallAsNamedTrainerAsync(string socketPath, string trainerId)
    {
        await using var process = ObservedProcess.Start(
            "other-process", "/usr/bin/python3",
            ["-c", Script, Path.Combine(RepoPaths.Root, "trainer-sdk", "python"), socketPath, trainerId],
            new Dictionary<string, string>());
        var exitCode = await process.WaitForExitAsync();
        Assert.True(exitCode == 0, $"the other process failed:\n{process.Output}");
        return process.Lines;
    }
}
