using ActorInfer.Actors.Node;
using System.CommandLine;

namespace ActorInfer.Cli;

/// <summary>A failure the user can act on: printed as one line, never as a stack trace.</summary>
public sealed class CliException(string message, int exitCode = 1) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

public static class CliRunner
{
    /// <summary>Parses and invokes; every error a user can cause becomes a message and a non-zero exit code.</summary>
    public static int Run(RootCommand root, string[] args, TextWriter? error = null)
    {
        error ??= Console.Error;
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors)
                error.WriteLine($"error: {e.Message}");
            error.WriteLine("Run 'actorinfer --help' for usage.");
            return 2;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception ex) when (Unwrap(ex) is CliException cli)
        {
            error.WriteLine($"error: {cli.Message}");
            return cli.ExitCode;
        }
        catch (Exception ex) when (Unwrap(ex) is ActorInfer.Actors.Node.RunSetupException setup)
        {
            error.WriteLine($"error: {setup.Message}");
            // As for every command: 2 for options, 3 when nothing fits the budgets, 1 otherwise.
            return setup.Problem switch
            {
                ActorInfer.Actors.Node.RunProblem.BadOption => 2,
                ActorInfer.Actors.Node.RunProblem.NoPolicy => 3,
                _ => 1,
            };
        }
        catch (Exception ex) when (Unwrap(ex) is IOException or UnauthorizedAccessException or FormatException or InvalidDataException or ArgumentException)
        {
            error.WriteLine($"error: {Unwrap(ex).Message}");
            return 1;
        }
        catch (Exception ex)
        {
            // Anything else is our fault, not the user's: still one line, with the type to report it by.
            // libtorch's messages carry a native backtrace after the first line; the user needs the first line only.
            var message = Unwrap(ex).Message.Split('\n')[0].Trim();
            error.WriteLine($"error: internal error ({Unwrap(ex).GetType().Name}): {message}");
            return 70;
        }
    }

    private static Exception Unwrap(Exception ex)
    {
        while (ex is AggregateException { InnerException: not null } or System.Reflection.TargetInvocationException { InnerException: not null })
            ex = ex.InnerException!;
        return ex;
    }
}
