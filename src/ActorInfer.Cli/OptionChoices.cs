using System.CommandLine;
using System.CommandLine.Parsing;

namespace ActorInfer.Cli;

/// <summary>
/// Options that take one of a few words. System.CommandLine's own restriction names the bad value over several lines
/// and not the option; this one says, on one line, which option got what and what it takes.
/// </summary>
public static class OptionChoices
{
    /// <summary>Restricts <paramref name="option"/> to <paramref name="values"/> (and offers them for completion).</summary>
    public static Option<T> OneOf<T>(this Option<T> option, params string[] values) where T : class?
    {
        option.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<T>() is string value && !values.Contains(value, StringComparer.Ordinal))
                result.AddError($"{option.Name}: '{value}' is not one of {string.Join(", ", values)}");
        });
        option.CompletionSources.Add(values);
        return option;
    }
}
