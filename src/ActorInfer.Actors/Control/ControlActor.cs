using ActorInfer.Actors.Diagnostics;
using ActorInfer.Actors.Jobs;
using ActorInfer.Model.Generation;
using Akka.Actor;
using Akka.Event;
using static ActorInfer.Actors.Control.ControlProtocol;

namespace ActorInfer.Actors.Control;

internal sealed class ControlActor : ReceiveActor, IWithTimers
{
    private sealed record Admitted(string JobId, string Path);

    private sealed record AdmissionFailed(string JobId, string Reason);

    private readonly ControlProtocol.Settings _settings;
    private readonly IActorRef _jobs;
    private readonly IActorRef _memory;
    private readonly CompletionFactory _factory;
    private readonly HashSet<string> _admitting = [];
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly ThrottledLog _pollFailures;

    public ControlActor(ControlProtocol.Settings settings, IActorRef jobs, IActorRef memory, CompletionFactory factory)
    {
        _settings = settings;
        _jobs = jobs;
        _memory = memory;
        _factory = factory;
        _pollFailures = new ThrottledLog(m => _log.Warning("{0}", m), TimeSpan.FromSeconds(5), TimeSpan.FromMinutes(5));
        Receive<PollNow>(_ => Poll());
        Receive<Admitted>(m =>
        {
            _admitting.Remove(m.JobId);
            Directory.CreateDirectory(_settings.AcceptedDir);
            if (File.Exists(m.Path)) File.Move(m.Path, System.IO.Path.Combine(_settings.AcceptedDir, System.IO.Path.GetFileName(m.Path)), overwrite: true);
        });
        Receive<AdmissionFailed>(m =>
        {
            _admitting.Remove(m.JobId);
            _log.Warning("job {0} was not accepted yet ({1}); trying again", m.JobId, m.Reason);
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart()
    {
        Directory.CreateDirectory(_settings.InboxDir);
        Directory.CreateDirectory(_settings.ControlDir);
        Timers.StartPeriodicTimer("poll", PollNow.Instance, TimeSpan.Zero, _settings.PollInterval);
    }

    private void Poll()
    {
        try
        {
            PollFolders();
            _pollFailures.Recovered();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Out of file handles, a folder removed, a disk gone: it repeats every poll until it passes.
            _pollFailures.Failed($"could not read {_settings.ControlDir} or {_settings.InboxDir}: {ex.Message}");
        }
    }

    private void PollFolders()
    {
        foreach (var path in Directory.EnumerateFiles(_settings.ControlDir, "*.json").Order(StringComparer.Ordinal))
            HandleCommand(path);
        foreach (var path in Directory.EnumerateFiles(_settings.InboxDir, "*.jsonl").Order(StringComparer.Ordinal))
        {
            var jobId = System.IO.Path.GetFileNameWithoutExtension(path);
            if (!_admitting.Add(jobId)) continue;
            JobProtocol.SubmitJob submit;
            try
            {
                submit = new JobProtocol.SubmitJob(jobId, ReadJob(path));
            }
            catch (IOException ex)
            {
                _admitting.Remove(jobId);
                _log.Warning("could not read {0}: {1}", path, ex.Message);
                continue;
            }
            _jobs.Ask<JobProtocol.JobAccepted>(submit, _settings.AskTimeout).PipeTo(Self,
                success: a => new Admitted(a.JobId, path),
                failure: ex => new AdmissionFailed(jobId, ex.Message));
        }
    }

    private List<JobProtocol.JobEntry> ReadJob(string path) => JobProtocol.Entries(File.ReadLines(path), _factory, _settings.RequestSeed);

    private void HandleCommand(string path)
    {
        try
        {
            var command = ParseCommand(File.ReadAllText(path));
            _memory.Tell(command);
            File.Delete(path);
            _log.Info("operator command {0} from {1}", command, System.IO.Path.GetFileName(path));
        }
        catch (FormatException ex)
        {
            _log.Warning("rejected control file {0}: {1}", path, ex.Message);
            File.WriteAllText(path + ".error", ex.Message + "\n");
            File.Move(path, path + ".rejected", overwrite: true);
        }
    }
}
