using System.CommandLine;
using ActorInfer.Model.Config;

namespace ActorInfer.Cli.Commands;

/// <summary>`actorinfer info`: a model's shape, parameter count and bytes, by arithmetic (no weights loaded).</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var command = new Command("info", "Print a model's shape, parameter count and bytes per layer (no weights are loaded).");
        var model = new Option<string>("--model") { Description = "Model directory or named size (opt-125m ... opt-175b, llama-2-7b, llama-3.1-8b, mistral-7b, ...).", Required = true };
        var bytesPerElement = new Option<int>("--bytes-per-element") { Description = "2 for float16/bfloat16, 4 for float32.", DefaultValueFactory = _ => 2 };
        command.Options.Add(model);
        command.Options.Add(bytesPerElement);
        command.SetAction(parse =>
        {
            var config = ModelConfigs.Resolve(parse.GetValue(model)!);
            var element = parse.GetValue(bytesPerElement);
            if (element is not (2 or 4)) throw new CliException("--bytes-per-element must be 2 or 4", 2);
            var shape = new ModelShape(config);
            Console.WriteLine($"model              {config.Name}");
            Console.WriteLine($"architecture       {config.ModelType}");
            Console.WriteLine($"layers             {config.NumHiddenLayers} (hidden {config.HiddenSize}, heads {config.NumAttentionHeads}, key/value heads {config.NumKeyValueHeads}, head_dim {config.HeadDim}, ffn {config.FfnSize}, vocab {config.VocabSize})");
            if (config is OptConfig opt)
                Console.WriteLine($"layer norm         {(opt.DoLayerNormBefore ? "pre" : "post")}{(opt.HasProjection ? $", word_embed_proj_dim {opt.WordEmbedProjDim}" : "")}");
            if (config is LlamaConfig llama)
                Console.WriteLine($"rotary             theta {llama.Rope.Theta}, {llama.Rope.Type}{(llama.Rope.Type == "default" ? "" : $" factor {llama.Rope.Factor}")}; head {(llama.TieWordEmbeddings ? "tied" : "separate")}");
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
