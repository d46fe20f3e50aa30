using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using ActorInfer.TestSupport;
using Akka.Actor;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// The gateway's warm-up of a job's way to acceptance (<see cref="IngestionWarmUp"/>) must run the path a valid job takes:
/// lines the parser refused would warm its error path instead.
/// </summary>
public sealed class IngestionWarmUpTests : IDisposable
{
    private readonly ActorSystem _system = ActorSystem.Create("ingestion-warm-up-tests");

    public void Dispose() => _system.Dispose();

    [Theory]
    [InlineData("opt-tiny")]
    [InlineData("llama-tiny")]
    public void Every_line_of_the_synthetic_job_is_a_valid_request_for_the_model_within_its_context(string fixture)
    {
        var dir = fixture.StartsWith("opt", StringComparison.Ordinal) ? Fixtures.HfOpt(fixture) : Fixtures.HfLlama(fixture);
        var factory = new CompletionFactory(ModelConfigs.Resolve(dir), ModelFiles.OpenCodec(dir));
        Assert.Equal(IngestionWarmUp.Lines, IngestionWarmUp.Run(_system, factory));
    }

}
