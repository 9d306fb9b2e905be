using System.Globalization;
using System.Text;
using System.Text.Json.Serialization;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// What <c>checkpoint-sidecar drill</c> prints: how the rehearsed preemption flush went against the
/// budget a real preemption would have had. A published format (<c>--json</c>): fields are only added.
/// </summary>
/// <param name="Outcome">committed, failed or superseded.</param>
/// <param name="BudgetSeconds">Deadline minus trigger: G minus the safety margin.</param>
/// <param name="TotalSeconds">Trigger to commit; for a failed drill, trigger to the end the command saw.</param>
/// <param name="MarginSeconds">Budget minus total: seconds to spare (negative: short by).</param>
/// <param name="Fits">Whether a real preemption now would have committed before its deadline.</param>
public sealed record DrillReport(
    int FormatVersion, string CheckpointId, string Outcome, long? Step, string? Error,
    double GracePeriodSeconds, double SafetyMarginSeconds, double BudgetSeconds, double TotalSeconds,
    double MarginSeconds, double BudgetUsedRatio, bool Fits, long? Bytes, IReadOnlyList<DrillPhase> Phases)
{
    /// <summary>The arithmetic, apart from any I/O so it can be checked by hand.</summary>
    /// <param name="phases">Phase durations of a committed drill (notify, dump, copy, verify, commit); empty otherwise.</param>
    /// <param name="total">From the trigger to the commit (or, failed, to the end).</param>
    public static DrillReport From(
        string checkpointId, string outcome, long? step, string? error, TimeSpan gracePeriod, TimeSpan safetyMargin,
        DateTimeOffset triggeredAt, DateTimeOffset deadline, TimeSpan total, IReadOnlyList<(string Name, TimeSpan Duration)> phases, long? bytes)
    {
        var budget = deadline - triggeredAt;
        var margin = budget - total;
        // Committed is not enough: the sidecar fails the drill at the deadline, but a commit and that
        // timer may cross; only a commit within the budget fits.
        var fits = outcome == "committed" && margin >= TimeSpan.Zero;
        return new DrillReport(1, checkpointId, outcome, step, error, gracePeriod.TotalSeconds, safetyMargin.TotalSeconds,
            budget.TotalSeconds, total.TotalSeconds, margin.TotalSeconds,
            budget > TimeSpan.Zero ? total / budget : double.PositiveInfinity, fits, bytes,
            phases.Select(p => new DrillPhase(p.Name, p.Duration.TotalSeconds,
                budget > TimeSpan.Zero ? p.Duration / budget : double.PositiveInfinity)).ToList());
    }

    public string ToText()
    {
        var text = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        text.AppendLine(c, $"preemption drill {CheckpointId}: {Outcome}{(Step is { } s ? string.Create(c, $" at step {s}") : "")}{(string.IsNullOrEmpty(Error) ? "" : ": " + Error)}");
        text.AppendLine(c, $"  budget  {BudgetSeconds,8:F3} s  (grace {GracePeriodSeconds:F0} s - safety margin {SafetyMarginSeconds:F1} s)");
        foreach (var phase in Phases)
        {
            text.AppendLine(c, $"  {phase.Name,-7} {phase.Seconds,8:F3} s  {phase.BudgetShare,6:P1} of budget");
        }

        text.AppendLine(c, $"  total   {TotalSeconds,8:F3} s  {BudgetUsedRatio,6:P1} of budget");
        text.AppendLine(c, $"  margin  {MarginSeconds,8:F3} s");
        text.Append(Fits
            ? "a real preemption now would fit"
            : string.Create(c, $"a real preemption now would NOT fit in {GracePeriodSeconds:F0} s grace"));
        return text.ToString();
    }
}

/// <param name="BudgetShare">Seconds divided by the budget.</param>
public sealed record DrillPhase(string Name, double Seconds, double BudgetShare);

// A budget of zero (G no larger than the safety margin) makes the ratios infinite: written as "Infinity", not an exception.
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(DrillReport))]
internal sealed partial class DrillJsonContext : JsonSerializerContext;
