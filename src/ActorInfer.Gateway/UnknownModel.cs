namespace ActorInfer.Gateway;

/// <summary>A request for a model the node does not serve: 404 <c>model_not_found</c>, naming it and the models served.</summary>
public static class UnknownModel
{
    public static string Message(string model, IEnumerable<string> served)
    {
        var names = served.Select(n => $"'{n}'").ToArray();
        return $"the model '{model}' does not exist; this node serves {(names.Length == 1 ? names[0] : string.Join(", ", names))}";
    }

    public static ApiError Error(string model, IEnumerable<string> served) => ApiError.NotFound("model", Message(model, served), "model_not_found");
}
