using System.Globalization;
using Checkpoint.TrainerSdk;

namespace Checkpoint.Samples.SampleTrainer;

/// <summary>
/// A trainer that resumes from the sidecar's latest checkpoint, checkpoints every N steps, and dumps when the pod is
/// preempted. Integration tests read its stdout, so the lines it prints there are a contract; diagnostics go to stderr.
/// </summary>
internal static class Program
{
    private const int ExitUsage = 2;
    private const int ExitFailure = 3;

    private static async Task<int> Main(string[] args)
    {
        TrainerArguments arguments;
        try
        {
            arguments = TrainerArguments.Parse(args);
        }
        catch (FormatException exception)
        {
            await Console.Error.WriteLineAsync($"sample-trainer: {exception.Message}\n{TrainerArguments.Usage}");
            return ExitUsage;
        }

        if (arguments.ShowHelp)
        {
            Console.WriteLine(TrainerArguments.Usage);
            return 0;
        }

        try
        {
            return await TrainAsync(arguments);
        }
        catch (Exception exception) when (exception is CheckpointException or IOException or InvalidDataException or UnauthorizedAccessException or System.Text.Json.JsonException or KeyNotFoundException)
        {
            await Console.Error.WriteLineAsync($"sample-trainer: {exception.Message}");
            return ExitFailure;
        }
    }

    private static async Task<int> TrainAsync(TrainerArguments arguments)
    {
        var options = new CheckpointClientOptions();
        if (arguments.Rank is { } rank)
        {
            options.Rank = rank;
        }

        if (arguments.SocketPath is { } socketPath)
        {
            options.SocketPath = socketPath;
        }

        options.Description = string.Create(
            CultureInfo.InvariantCulture,
            $"sample-trainer rank {options.Rank} on {Environment.MachineName} pid {Environment.ProcessId}");

        await using var client = await CheckpointClient.ConnectAsync(options);
        var model = new LinearRegression();

        var latest = await client.GetLatestCheckpointAsync();
        if (latest is null)
        {
            Console.WriteLine("starting fresh");
        }
        else
        {
            ModelFiles.Load(latest, client.Rank, model);
            Console.WriteLine(Invariant($"resumed from checkpoint {latest.Id} at step {model.Step}"));
        }

        while (model.Step < arguments.Steps)
        {
            // A step boundary: the parameters are consistent, so this is where a requested dump is written.
            if (client.PendingDump is { Reason: CheckpointReason.Preemption } dump)
            {
                return await DumpForPreemptionAsync(client, dump, model, arguments, options.PreemptionExitCode);
            }

            if (client.PendingDump is { } pushed)
            {
                // Pushed but not a preemption (a preemption drill): write it at once, then carry on training.
                await SubmitAsync(client, pushed, model, arguments, pushed.Drill ? "drill" : "pushed");
            }

            double loss = model.TrainStep();
            if (model.Step % 10 == 0)
            {
                Console.WriteLine(Invariant($"step {model.Step} loss {loss.ToString("R", CultureInfo.InvariantCulture)}"));
            }

            if (arguments.CheckpointEvery > 0 && model.Step % arguments.CheckpointEvery == 0 && !client.TerminationRequested)
            {
                await CheckpointPeriodicallyAsync(client, model, arguments);
            }

            if (arguments.StepDelayMilliseconds > 0)
            {
                await Task.Delay(arguments.StepDelayMilliseconds);
            }
        }

        Console.WriteLine(Invariant($"finished at step {model.Step} params-sha256 {model.ParametersSha256()}"));
        return 0;
    }

    private static async Task CheckpointPeriodicallyAsync(CheckpointClient client, LinearRegression model, TrainerArguments arguments)
    {
        try
        {
            // A drill under way when this checkpoint was due is the checkpoint the sidecar hands back: it is written as that.
            var dump = await client.BeginCheckpointAsync(model.Step, CheckpointReason.Periodic);
            await SubmitAsync(client, dump, model, arguments, dump.Drill ? "drill" : "periodic");
        }
        catch (CheckpointException exception)
        {
            // A missed periodic checkpoint costs only the steps until the next one; training is worth more.
            await Console.Error.WriteLineAsync(
                Invariant($"sample-trainer: periodic checkpoint at step {model.Step} skipped: {exception.Message}"));
        }
    }

    private static async Task SubmitAsync(CheckpointClient client, DumpRequest dump, LinearRegression model, TrainerArguments arguments, string kind)
    {
        try
        {
            var files = ModelFiles.Write(dump, client.Rank, model, arguments.PayloadBytes);
            Console.WriteLine(Invariant($"checkpoint {dump.CheckpointId} written at step {model.Step} ({kind})"));

            // Returns once the sidecar has the report; copying to shared storage goes on while training continues.
            await client.SubmitDumpAsync(dump, model.Step, files, Metadata(model));
        }
        catch (Exception exception) when (exception is CheckpointException or IOException or UnauthorizedAccessException)
        {
            await Console.Error.WriteLineAsync(
                Invariant($"sample-trainer: {kind} checkpoint {dump.CheckpointId} at step {model.Step} skipped: {exception.Message}"));
        }
    }

    private static async Task<int> DumpForPreemptionAsync(
        CheckpointClient client, DumpRequest dump, LinearRegression model, TrainerArguments arguments, int preemptionExitCode)
    {
        try
        {
            var files = ModelFiles.Write(dump, client.Rank, model, arguments.PayloadBytes);
            Console.WriteLine(Invariant($"checkpoint {dump.CheckpointId} written at step {model.Step} (preemption)"));

            // Waits for the commit; the SDK then ends the process with the preemption exit code.
            var outcome = await client.SubmitDumpAsync(dump, model.Step, files, Metadata(model));
            await Console.Error.WriteLineAsync($"sample-trainer: preemption checkpoint {dump.CheckpointId} ended {outcome?.Status}");
        }
        catch (Exception exception) when (exception is CheckpointException or IOException or UnauthorizedAccessException)
        {
            await Console.Error.WriteLineAsync($"sample-trainer: preemption checkpoint {dump.CheckpointId} failed: {exception.Message}");
        }

        // Reached only when the SDK does not own termination; the job must still be rescheduled, not marked done.
        return preemptionExitCode;
    }

    private static Dictionary<string, string> Metadata(LinearRegression model) => new(StringComparer.Ordinal)
    {
        ["step"] = model.Step.ToString(CultureInfo.InvariantCulture),
        ["params-sha256"] = model.ParametersSha256(),
    };

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
