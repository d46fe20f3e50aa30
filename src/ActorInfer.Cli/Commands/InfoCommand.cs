using System.CommandLine;
using ActorInfer.Model.Config;

namespace ActorInfer.Cli.Commands;

/// <summary>`actorinfer info`: a model's shape, parameter count and bytes, by arithmetic (no weights loaded).</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var command = new Command("info", "Print a model's shape, parameter count and bytes per layer (no weights are loaded).");
        var model = new Option<string>("--model") { Description = "Model directory or named size (opt-125m ... opt-175b).", Required = true };
        var bytesPerElement = new Option<int>("--bytes-per-element") { Description = "2 for float16/bfloat16, 4 for float32.", DefaultValueFactory = _ => 2 };
        command.Options.Add(model);
        command.Options.Add(bytesPerElement);
        command.SetAction(parse =>
        {
            var config = OptConfigs.Resolve(parse.GetValue(model)!);
            var element = parse.GetValue(bytesPerElement);
            if (element is not (2 or 4)) throw new CliException("--bytes-per-element must be 2 or 4", 2);
            var shape = new ModelShape(config);
            Console.WriteLine($"model              {config.Name}");
            Console.WriteLine($"layers             {config.NumHiddenLayers} (hidden {config.HiddenSize}, heads {config.NumAttentionHeads}, ffn {config.FfnDim}, vocab {config.VocabSize})");
            Console.WriteLine($"layer norm         {(config.DoLayerNormBefore ? "pre" : "post")}{(config.HasProjection ? $", word_embed_proj_dim {config.WordEmbedProjDim}" : "")}");
            Console.WriteLine($"parameters         {shape.TotalParameters:N0} ({shape.TotalParameters / 1e9:F2} billion)");
            Console.WriteLine($"per layer          {shape.ParametersPerLayer:N0} parameters, {shape.LayerBytes(element):N0} bytes");
            Console.WriteLine($"embeddings + head  {shape.GlobalParameters:N0} parameters, {shape.GlobalBytes(element):N0} bytes");
            Console.WriteLine($"total bytes        {shape.TotalBytes(element):N0}");
            Console.WriteLine($"KV cache per token {shape.KvCacheBytesPerTokenPerLayer(element) * config.NumHiddenLayers:N0} bytes (all layers)");
            return 0;
        });
        return command;
    }
}
