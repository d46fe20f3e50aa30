namespace ActorInfer.Planning;

/// <summary>The nine placement shares a policy chooses; the variables of the search's linear program.</summary>
public enum Placement
{
    WeightsGpu, WeightsCpu, WeightsDisk,
    CacheGpu, CacheCpu, CacheDisk,
    ActivationsGpu, ActivationsCpu, ActivationsDisk,
}

/// <summary>
/// constant + Σ coefficient[p] · share[p] over the nine placement shares. Every time and memory term of the cost
/// model has this form for a fixed batch geometry, which is what lets the search be a linear program, and lets the
/// evaluation of a policy and the program use the very same terms.
/// </summary>
public sealed class LinearExpression
{
    public const int VariableCount = 9;
    private readonly double[] coefficients;

    public double Constant { get; }

    private LinearExpression(double constant, double[] coefficients)
    {
        Constant = constant;
        this.coefficients = coefficients;
    }

    public static LinearExpression Zero { get; } = new(0, new double[VariableCount]);

    public static LinearExpression Of(double constant) => new(constant, new double[VariableCount]);

    /// <summary>amount · (sum of the given shares).</summary>
    public static LinearExpression Of(double amount, params Placement[] shares)
    {
        var coefficients = new double[VariableCount];
        foreach (var share in shares)
            coefficients[(int)share] += amount;
        return new LinearExpression(0, coefficients);
    }

    public double this[Placement share] => coefficients[(int)share];

    public static LinearExpression operator +(LinearExpression left, LinearExpression right)
    {
        var sum = new double[VariableCount];
        for (var i = 0; i < VariableCount; i++)
            sum[i] = left.coefficients[i] + right.coefficients[i];
        return new LinearExpression(left.Constant + right.Constant, sum);
    }

    public static LinearExpression operator *(double factor, LinearExpression expression)
    {
        var scaled = new double[VariableCount];
        for (var i = 0; i < VariableCount; i++)
            scaled[i] = factor * expression.coefficients[i];
        return new LinearExpression(factor * expression.Constant, scaled);
    }

    public static LinearExpression operator /(LinearExpression expression, double divisor) => (1 / divisor) * expression;

    public double Evaluate(IReadOnlyList<double> shares)
    {
        var value = Constant;
        for (var i = 0; i < VariableCount; i++)
            value += coefficients[i] * shares[i];
        return value;
    }

    public static double[] SharesOf(Policy policy) =>
    [
        policy.Weights.Gpu, policy.Weights.Cpu, policy.Weights.Disk,
        policy.Cache.Gpu, policy.Cache.Cpu, policy.Cache.Disk,
        policy.Activations.Gpu, policy.Activations.Cpu, policy.Activations.Disk,
    ];
}
