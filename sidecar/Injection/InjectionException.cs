namespace Checkpoint.Sidecar.Injection;

/// <summary>A manifest the injector will not change: what it is, where, and what to do about it.</summary>
internal sealed class InjectionException(string message) : Exception(message)
{
}
