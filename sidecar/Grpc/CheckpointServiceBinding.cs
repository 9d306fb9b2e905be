using Checkpoint.Protos.V1;
using Checkpoint.Sidecar.Storage;
using Google.Protobuf;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;

namespace Checkpoint.Sidecar.Grpc;

/// <summary>
/// Binds the checkpoint.v1 methods to <see cref="CheckpointGrpcService"/> as the generated code would,
/// with two differences that callers on the socket are owed:
/// a request that does not parse as its protobuf message is INVALID_ARGUMENT (grpc-dotnet would
/// answer UNKNOWN and log a stack trace: the parser throws before any interceptor runs), and a
/// storage failure that escapes a method becomes a status whose message is a readable sentence.
/// </summary>
internal sealed class CheckpointServiceBinding(CheckpointGrpcService service, ILogger<CheckpointServiceBinding> logger)
    : IServiceMethodProvider<CheckpointGrpcService>
{
    public void OnServiceMethodDiscovery(ServiceMethodProviderContext<CheckpointGrpcService> context) =>
        CheckpointService.BindService(new Binder(context, logger), service);

    private sealed class Binder(ServiceMethodProviderContext<CheckpointGrpcService> context, ILogger logger) : ServiceBinderBase
    {
        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler)
        {
            ArgumentNullException.ThrowIfNull(handler);
            context.AddUnaryMethod(RefusingMalformedRequests(method), [],
                (_, request, call) => TranslateStorageFailures(method.Name, () => handler(request, call)));
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler)
        {
            ArgumentNullException.ThrowIfNull(handler);
            context.AddServerStreamingMethod(RefusingMalformedRequests(method), [],
                (_, request, responses, call) => TranslateStorageFailures(method.Name, async () =>
                {
                    await handler(request, responses, call).ConfigureAwait(false);
                    return true;
                }));
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler) =>
            throw new NotSupportedException($"{method.FullName}: client streaming methods are not bound; add them to {nameof(CheckpointServiceBinding)}.");

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler) =>
            throw new NotSupportedException($"{method.FullName}: duplex streaming methods are not bound; add them to {nameof(CheckpointServiceBinding)}.");

        private static Method<TRequest, TResponse> RefusingMalformedRequests<TRequest, TResponse>(Method<TRequest, TResponse> method)
            where TRequest : class
            where TResponse : class
        {
            var parse = method.RequestMarshaller.ContextualDeserializer;
            var requests = Marshallers.Create(method.RequestMarshaller.ContextualSerializer, payload =>
            {
                try
                {
                    return parse(payload);
                }
                catch (InvalidProtocolBufferException)
                {
                    throw new RpcException(new Status(StatusCode.InvalidArgument,
                        $"the {method.Name} request is not a valid checkpoint.v1 protobuf message"));
                }
            });
            return new Method<TRequest, TResponse>(method.Type, method.ServiceName, method.Name, requests, method.ResponseMarshaller);
        }

        private async Task<T> TranslateStorageFailures<T>(string methodName, Func<Task<T>> call)
        {
            try
            {
                return await call().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                var description = StorageErrors.Describe(e);
                GrpcLog.StorageFailed(logger, methodName, description);
                throw new RpcException(new Status(StorageErrors.IsOutOfSpace(e) ? StatusCode.ResourceExhausted : StatusCode.Internal, description));
            }
        }
    }
}
