using System.Globalization;
using System.Net;
using System.Text;
using k8s;
using System.Text.Json.Nodes;
using k8s.Models;

namespace Checkpoint.IntegrationTests.Infrastructure;

/// <summary>
/// A stand-in for the Kubernetes API server, the one stand-in the tests use: no API server can run
/// on these machines. It speaks real Kubernetes JSON (serialized from KubernetesClient's model
/// types) for what the sidecar uses: GET of its pod, a watch on it (MODIFIED events pushed by the
/// test), Event creation, and JSON merge patches of the pod's annotations. <see cref="FailWrites"/>
/// makes it refuse writes as a broken or unauthorized API server does.
/// </summary>
internal sealed class FakeKubernetesApi : IAsyncDisposable
{
    public const string Token = "fake-service-account-token";

    private readonly HttpListener _listener;
    private readonly V1Pod _pod;
    private readonly List<HttpListenerResponse> _watchers = [];
    private readonly List<Corev1Event> _events = [];
    private readonly List<(string Reason, TaskCompletionSource<Corev1Event> Found)> _eventWaiters = [];
    private readonly List<AnnotationPatch> _patches = [];
    private readonly List<(Func<AnnotationPatch, bool> Match, TaskCompletionSource<AnnotationPatch> Found)> _patchWaiters = [];
    private readonly TaskCompletionSource _watching = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _serving;
    private int _resourceVersion = 100;

    public FakeKubernetesApi(V1Pod pod)
    {
        _pod = pod;
        // The first serialisation of a pod builds the serializer (a second or more on a loaded
        // machine): done here, before any request waits on it.
        _ = KubernetesJson.Serialize(pod);
        (_listener, Port) = Listen();
        _serving = Task.Run(ServeAsync);
    }

    public int Port { get; }

    /// <summary>
    /// HttpListener cannot bind port 0, so a free port is picked first; another process may take it
    /// in between (tests run in parallel), which the bind reports at once: pick another.
    /// </summary>
    private static (HttpListener Listener, int Port) Listen()
    {
        for (var attempt = 1; ; attempt++)
        {
            var port = TestDirectories.FreeTcpPort();
            var listener = new HttpListener();
            listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            try
            {
                listener.Start();
                return (listener, port);
            }
            catch (HttpListenerException) when (attempt < 10)
            {
                // Taken meanwhile; the next free port.
                listener.Close();
            }
        }
    }

    /// <summary>When set, PATCH of the pod and POST of Events answer this status, with a Kubernetes Status body.</summary>
    public int? FailWrites { get; set; }

    private readonly List<(int Count, TaskCompletionSource Reached)> _refusalWaiters = [];
    private int _refusedWrites;

    /// <summary>Completes once <paramref name="count"/> writes have been refused because of <see cref="FailWrites"/>.</summary>
    public Task WaitForRefusedWritesAsync(int count)
    {
        lock (_refusalWaiters)
        {
            if (_refusedWrites >= count)
            {
                return Task.CompletedTask;
            }

            var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _refusalWaiters.Add((count, reached));
            return reached.Task.WaitAsync(ObservedProcess.DefaultTimeout);
        }
    }

    /// <summary>The annotation patches applied so far, in order.</summary>
    public IReadOnlyList<AnnotationPatch> Patches
    {
        get
        {
            lock (_patches)
            {
                return _patches.ToList();
            }
        }
    }

    public IReadOnlyList<Corev1Event> Events
    {
        get
        {
            lock (_events)
            {
                return _events.ToList();
            }
        }
    }

    /// <summary>The first patch (already applied, or to come) that <paramref name="match"/> accepts.</summary>
    public async Task<AnnotationPatch> WaitForPatchAsync(Func<AnnotationPatch, bool> match)
    {
        TaskCompletionSource<AnnotationPatch> found;
        lock (_patches)
        {
            if (_patches.FirstOrDefault(match) is { } seen)
            {
                return seen;
            }

            found = new TaskCompletionSource<AnnotationPatch>(TaskCreationOptions.RunContinuationsAsynchronously);
            _patchWaiters.Add((match, found));
        }

        try
        {
            return await found.Task.WaitAsync(ObservedProcess.DefaultTimeout);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"no such patch; patches: {string.Join(" | ", Patches.Select(p => string.Join(", ", p.Annotations)))}");
        }
    }

    /// <summary>Completes when the sidecar has opened a watch on its pod.</summary>
    public Task Watching => _watching.Task;

    public static V1Pod Pod(string name, long gracePeriodSeconds) => new()
    {
        ApiVersion = "v1",
        Kind = "Pod",
        Metadata = new V1ObjectMeta
        {
            Name = name,
            NamespaceProperty = "default",
            Uid = Guid.NewGuid().ToString(),
            ResourceVersion = "100",
            Labels = new Dictionary<string, string> { ["job-name"] = "it-job" },
        },
        Spec = new V1PodSpec
        {
            TerminationGracePeriodSeconds = gracePeriodSeconds,
            Containers = [new V1Container { Name = "checkpoint-sidecar", Image = "checkpoint-sidecar:test" }],
        },
        Status = new V1PodStatus { Phase = "Running", Conditions = [new V1PodCondition { Type = "Ready", Status = "True" }] },
    };

    public string PodUid => _pod.Metadata.Uid;

    /// <summary>A kubeconfig pointing at this server with a bearer token, for the sidecar's KUBECONFIG.</summary>
    public string WriteKubeconfig(string directory)
    {
        var path = Path.Combine(directory, "kubeconfig");
        File.WriteAllText(path, $"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: fake
              cluster:
                server: http://127.0.0.1:{Port}
            users:
            - name: sidecar
              user:
                token: {Token}
            contexts:
            - name: fake
              context:
                cluster: fake
                user: sidecar
                namespace: default
            current-context: fake
            """);
        return path;
    }

    /// <summary>Changes the pod as the control plane would and sends MODIFIED to every watcher.</summary>
    public async Task ModifyAsync(Action<V1Pod> change)
    {
        List<HttpListenerResponse> watchers;
        string line;
        lock (_pod)
        {
            change(_pod);
            _pod.Metadata.ResourceVersion = (++_resourceVersion).ToString(CultureInfo.InvariantCulture);
            // The watch wire format: one JSON object a line, the event type in capitals.
            line = $"{{\"type\":\"MODIFIED\",\"object\":{KubernetesJson.Serialize(_pod)}}}\n";
            watchers = _watchers.ToList();
        }

        foreach (var watcher in watchers)
        {
            var bytes = Encoding.UTF8.GetBytes(line);
            await watcher.OutputStream.WriteAsync(bytes);
            await watcher.OutputStream.FlushAsync();
        }
    }

    public async Task<Corev1Event> WaitForEventAsync(string reason)
    {
        TaskCompletionSource<Corev1Event> found;
        lock (_events)
        {
            if (_events.FirstOrDefault(e => e.Reason == reason) is { } seen)
            {
                return seen;
            }

            found = new TaskCompletionSource<Corev1Event>(TaskCreationOptions.RunContinuationsAsynchronously);
            _eventWaiters.Add((reason, found));
        }

        try
        {
            return await found.Task.WaitAsync(ObservedProcess.DefaultTimeout);
        }
        catch (TimeoutException)
        {
            lock (_events)
            {
                throw new TimeoutException($"no event {reason}; events: {string.Join(", ", _events.Select(e => e.Reason))}");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Stop();
        lock (_pod)
        {
            foreach (var watcher in _watchers)
            {
                watcher.Abort();
            }
        }

        // On Linux, Stop() does not always end an accept already pending (a dispose right after the
        // constructor hung a test run); Close() should. Cleanup never hangs a test run either way: a
        // serving loop still stuck in its accept after that is abandoned.
        _listener.Close();
        try
        {
            await _serving.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // Nothing depends on the loop any more; the listener is closed.
        }
    }

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            _ = Task.Run(() => HandleAsync(context));
        }
    }

    private async Task HandleAsync(HttpListenerContext context)
    {
        var request = context.Request;
        var response = context.Response;
        var podPath = $"/api/v1/namespaces/{_pod.Metadata.NamespaceProperty}/pods";
        if (request.Headers["Authorization"] != $"Bearer {Token}")
        {
            await RespondAsync(response, 401, """{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}""");
            return;
        }

        var path = request.Url!.AbsolutePath;
        if (request.HttpMethod == "GET" && path == $"{podPath}/{_pod.Metadata.Name}")
        {
            string json;
            lock (_pod)
            {
                json = KubernetesJson.Serialize(_pod);
            }

            await RespondAsync(response, 200, json);
        }
        else if (request.HttpMethod == "GET" && path == podPath && request.QueryString["watch"] == "true"
                 && request.QueryString["fieldSelector"] == $"metadata.name={_pod.Metadata.Name}")
        {
            response.StatusCode = 200;
            response.ContentType = "application/json";
            response.SendChunked = true;
            await response.OutputStream.FlushAsync();
            lock (_pod)
            {
                _watchers.Add(response);
            }

            _watching.TrySetResult();
        }
        else if (FailWrites is { } status && request.HttpMethod is "PATCH" or "POST")
        {
            lock (_refusalWaiters)
            {
                _refusedWrites++;
                foreach (var waiter in _refusalWaiters.Where(w => w.Count <= _refusedWrites).ToList())
                {
                    waiter.Reached.TrySetResult();
                    _refusalWaiters.Remove(waiter);
                }
            }

            var reason = status == 403 ? "Forbidden" : "InternalError";
            await RespondAsync(response, status,
                $$"""{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"refused by the test","reason":"{{reason}}","code":{{status}}}""");
        }
        else if (request.HttpMethod == "PATCH" && path == $"{podPath}/{_pod.Metadata.Name}")
        {
            await PatchAsync(request, response);
        }
        else if (request.HttpMethod == "POST" && path == $"/api/v1/namespaces/{_pod.Metadata.NamespaceProperty}/events")
        {
            using var reader = new StreamReader(request.InputStream, Encoding.UTF8);
            var body = await reader.ReadToEndAsync();
            var posted = KubernetesJson.Deserialize<Corev1Event>(body);
            lock (_events)
            {
                _events.Add(posted);
                foreach (var waiter in _eventWaiters.Where(w => w.Reason == posted.Reason).ToList())
                {
                    waiter.Found.TrySetResult(posted);
                    _eventWaiters.Remove(waiter);
                }
            }

            await RespondAsync(response, 201, body);
        }
        else
        {
            await RespondAsync(response, 404, """{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}""");
        }
    }

    /// <summary>
    /// A JSON merge patch (RFC 7396) as the API server applies it: only metadata.annotations is
    /// accepted here (anything else is a 422, so the sidecar touching more than it says fails a
    /// test); a null value removes the key. Watchers see the change as MODIFIED.
    /// </summary>
    private async Task PatchAsync(HttpListenerRequest request, HttpListenerResponse response)
    {
        // When the patch came, not when this server got round to applying it.
        var arrived = DateTimeOffset.UtcNow;
        if (request.ContentType?.Split(';')[0].Trim() != "application/merge-patch+json")
        {
            await RespondAsync(response, 415, """{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"UnsupportedMediaType","code":415}""");
            return;
        }

        using var reader = new StreamReader(request.InputStream, Encoding.UTF8);
        var patch = JsonNode.Parse(await reader.ReadToEndAsync())!.AsObject();
        if (patch.Count != 1 || patch["metadata"] is not JsonObject metadata || metadata.Count != 1 || metadata["annotations"] is not JsonObject annotations)
        {
            await RespondAsync(response, 422, """{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Invalid","message":"the test's API server takes patches of metadata.annotations only","code":422}""");
            return;
        }

        string json;
        AnnotationPatch applied;
        lock (_pod)
        {
            _pod.Metadata.Annotations ??= new Dictionary<string, string>();
            foreach (var (key, value) in annotations)
            {
                if (value is null)
                {
                    _pod.Metadata.Annotations.Remove(key);
                }
                else
                {
                    _pod.Metadata.Annotations[key] = value.GetValue<string>();
                }
            }

            _pod.Metadata.ResourceVersion = (++_resourceVersion).ToString(CultureInfo.InvariantCulture);
            json = KubernetesJson.Serialize(_pod);
            applied = new AnnotationPatch(arrived, annotations.ToDictionary(a => a.Key, a => a.Value?.GetValue<string>()),
                new Dictionary<string, string>(_pod.Metadata.Annotations));
        }

        lock (_patches)
        {
            _patches.Add(applied);
            foreach (var waiter in _patchWaiters.Where(w => w.Match(applied)).ToList())
            {
                waiter.Found.TrySetResult(applied);
                _patchWaiters.Remove(waiter);
            }
        }

        await RespondAsync(response, 200, json);
        await NotifyWatchersAsync(json);
    }

    private async Task NotifyWatchersAsync(string podJson)
    {
        List<HttpListenerResponse> watchers;
        lock (_pod)
        {
            watchers = _watchers.ToList();
        }

        var bytes = Encoding.UTF8.GetBytes($"{{\"type\":\"MODIFIED\",\"object\":{podJson}}}\n");
        foreach (var watcher in watchers)
        {
            try
            {
                await watcher.OutputStream.WriteAsync(bytes);
                await watcher.OutputStream.FlushAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or IOException)
            {
                // A watch the sidecar closed meanwhile.
            }
        }
    }

    private static async Task RespondAsync(HttpListenerResponse response, int status, string json)
    {
        response.StatusCode = status;
        response.ContentType = "application/json";
        var bytes = Encoding.UTF8.GetBytes(json);
        response.ContentLength64 = bytes.Length;
        await response.OutputStream.WriteAsync(bytes);
        response.Close();
    }
}

/// <param name="Sent">What the patch set.</param>
/// <param name="Annotations">All of the pod's annotations after it.</param>
internal sealed record AnnotationPatch(DateTimeOffset At, IReadOnlyDictionary<string, string?> Sent, IReadOnlyDictionary<string, string> Annotations);
