using System.Buffers.Binary;
using System.Text;
using TorchSharp;

namespace ActorInfer.Model.Weights.Pickle;

/// <summary>A tensor as a PyTorch pickle describes it: a view of a storage member of the archive.</summary>
internal sealed record PickledTensor(string StorageKey, torch.ScalarType Dtype, long StorageElements, long Offset, long[] Shape, long[] Stride);

/// <summary>
/// Reads the <c>data.pkl</c> of a PyTorch checkpoint as data, never as code: a small interpreter of the pickle opcodes
/// that state dicts use, which knows a fixed list of names (OrderedDict, torch's tensor rebuild functions and storage
/// types) and refuses any other import, and any opcode it does not know, at the moment it reads it, so nothing a
/// crafted file names is ever looked up, let alone called. Tensors come out as descriptions; their bytes stay on disk.
/// </summary>
internal sealed class StateDictPickle
{
    private static readonly Dictionary<string, torch.ScalarType> StorageTypes = new(StringComparer.Ordinal)
    {
        ["HalfStorage"] = torch.ScalarType.Float16,
        ["BFloat16Storage"] = torch.ScalarType.BFloat16,
        ["FloatStorage"] = torch.ScalarType.Float32,
        ["DoubleStorage"] = torch.ScalarType.Float64,
        ["LongStorage"] = torch.ScalarType.Int64,
        ["IntStorage"] = torch.ScalarType.Int32,
        ["ShortStorage"] = torch.ScalarType.Int16,
        ["CharStorage"] = torch.ScalarType.Int8,
        ["ByteStorage"] = torch.ScalarType.Byte,
        ["BoolStorage"] = torch.ScalarType.Bool,
    };

    private static readonly HashSet<string> Functions = new(StringComparer.Ordinal)
    {
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor", "torch._utils._rebuild_parameter",
    };

    private sealed record Global(string Name);
    private sealed record Storage(string Key, torch.ScalarType Dtype, long Elements);
    private sealed record Tuple(object?[] Items);
    private sealed class Mark;

    private readonly byte[] _data;
    private readonly string _what;
    private readonly List<object?> _stack = [];
    private readonly Stack<int> _marks = new();
    private readonly Dictionary<long, object?> _memo = [];
    private int _at;

    private StateDictPickle(byte[] data, string what)
    {
        _data = data;
        _what = what;
    }

    /// <summary>The tensors of a state dict pickle, by name as stored.</summary>
    public static Dictionary<string, PickledTensor> Read(byte[] data, string what)
    {
        var result = new StateDictPickle(data, what).Run();
        if (result is not Dictionary<object, object?> dict)
            throw new InvalidDataException($"{what} holds a {Describe(result)}, not a state dict");
        var tensors = new Dictionary<string, PickledTensor>(StringComparer.Ordinal);
        foreach (var (key, value) in dict)
        {
            if (key is not string name) throw new InvalidDataException($"{what} has a state dict key {Describe(key)}, not a name");
            tensors[name] = value as PickledTensor ?? throw new InvalidDataException($"{what}: entry '{name}' is a {Describe(value)}, not a tensor");
        }
        return tensors;
    }

    private object? Run()
    {
        while (true)
        {
            if (_at >= _data.Length) throw Refuse("ends before its STOP opcode");
            var opcode = _data[_at++];
            switch (opcode)
            {
                case 0x80: _at++; break; // PROTO n
                case 0x95: Take(8); break; // FRAME: a length hint
                case 0x2e: return Pop(); // STOP
                case 0x28: _marks.Push(_stack.Count); _stack.Add(new Mark()); break; // MARK
                case 0x7d: Push(new Dictionary<object, object?>()); break; // EMPTY_DICT
                case 0x5d: Push(new List<object?>()); break; // EMPTY_LIST
                case 0x29: Push(new Tuple([])); break; // EMPTY_TUPLE
                case 0x74: Push(new Tuple(PopMark().ToArray())); break; // TUPLE
                case 0x85: Push(new Tuple([Pop()])); break; // TUPLE1
                case 0x86: { var b = Pop(); var a = Pop(); Push(new Tuple([a, b])); break; } // TUPLE2
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new Tuple([a, b, c])); break; } // TUPLE3
                case 0x4e: Push(null); break; // NONE
                case 0x88: Push(true); break; // NEWTRUE
                case 0x89: Push(false); break; // NEWFALSE
                case 0x4b: Push((long)Take(1)[0]); break; // BININT1
                case 0x4d: Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break; // BININT2
                case 0x4a: Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break; // BININT
                case 0x8a: Push(Long(Take(Take(1)[0]))); break; // LONG1
                case 0x47: Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break; // BINFLOAT
                case 0x8c: Push(Text(Take(1)[0])); break; // SHORT_BINUNICODE
                case 0x58: Push(Text(Length(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))))); break; // BINUNICODE
                case 0x8d: Push(Text(Length(BinaryPrimitives.ReadUInt64LittleEndian(Take(8))))); break; // BINUNICODE8
                case 0x43: Push(Take(Take(1)[0]).ToArray()); break; // SHORT_BINBYTES
                case 0x42: Push(Take(Length(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))).ToArray()); break; // BINBYTES
                case 0x71: _memo[Take(1)[0]] = Peek(); break; // BINPUT
                case 0x72: _memo[BinaryPrimitives.ReadUInt32LittleEndian(Take(4))] = Peek(); break; // LONG_BINPUT
                case 0x94: _memo[_memo.Count] = Peek(); break; // MEMOIZE
                case 0x68: Push(Recall(Take(1)[0])); break; // BINGET
                case 0x6a: Push(Recall(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break; // LONG_BINGET
                case 0x63: Push(Import(Line(), Line())); break; // GLOBAL
                case 0x93: { var name = Pop(); var module = Pop(); Push(Import(module as string, name as string)); break; } // STACK_GLOBAL
                case 0x51: Push(PersistentId(Pop())); break; // BINPERSID
                case 0x52: { var args = Pop(); var callable = Pop(); Push(Reduce(callable, args)); break; } // REDUCE
                case 0x62: Build(Pop(), Peek()); break; // BUILD
                case 0x73: { var value = Pop(); var key = Pop(); SetItem(Peek(), key, value); break; } // SETITEM
                case 0x75: // SETITEMS
                {
                    var items = PopMark();
                    if (items.Count % 2 != 0) throw Refuse("has SETITEMS with an odd number of items");
                    for (var i = 0; i < items.Count; i += 2) SetItem(Peek(), items[i], items[i + 1]);
                    break;
                }
                case 0x61: { var item = Pop(); AsList(Peek()).Add(item); break; } // APPEND
                case 0x65: { var items = PopMark(); AsList(Peek()).AddRange(items); break; } // APPENDS
                default:
                    throw Refuse($"uses pickle opcode 0x{opcode:x2} at byte {_at - 1}, which a state dict of tensors never needs: refused");
            }
        }
    }

    /// <summary>Only the names a state dict needs resolve (to a marker, never to anything that runs); any other is refused here.</summary>
    private Global Import(string? module, string? name)
    {
        if (module is null || name is null) throw Refuse("imports a name that is not a string");
        var full = $"{module}.{name}";
        if (Functions.Contains(full) || (module == "torch" && StorageTypes.ContainsKey(name))) return new Global(full);
        throw Refuse($"imports {full}, which is not a tensor or a plain container: refused, nothing in it was run");
    }

    private Storage PersistentId(object? id)
    {
        if (id is Tuple { Items: ["storage", Global type, string key, string, long elements] } &&
            type.Name.StartsWith("torch.", StringComparison.Ordinal) && StorageTypes.TryGetValue(type.Name["torch.".Length..], out var dtype))
            return new Storage(key, dtype, elements);
        throw Refuse($"has a persistent id {Describe(id)} that is not a tensor storage");
    }

    private object Reduce(object? callable, object? args)
    {
        if (callable is not Global global || args is not Tuple { Items: var a })
            throw Refuse($"calls a {Describe(callable)} with {Describe(args)}: only torch's tensor rebuild functions and OrderedDict are allowed");
        switch (global.Name)
        {
            case "collections.OrderedDict" when a.Length == 0:
                return new Dictionary<object, object?>();
            case "torch._utils._rebuild_tensor_v2" or "torch._utils._rebuild_tensor"
                when a.Length >= 4 && a[0] is Storage s && a[1] is long offset && a[2] is Tuple size && a[3] is Tuple stride:
                return new PickledTensor(s.Key, s.Dtype, s.Elements, offset, Longs(size), Longs(stride));
            case "torch._utils._rebuild_parameter" when a.Length >= 1 && a[0] is PickledTensor t:
                return t;
            default:
                throw Refuse($"calls {global.Name} with arguments it does not take in a state dict");
        }
    }

    /// <summary>An OrderedDict's own attributes (torch keeps its _metadata there): plain data, set aside.</summary>
    private void Build(object? state, object? target)
    {
        if (target is Dictionary<object, object?> && state is Dictionary<object, object?> or null) return;
        throw Refuse($"sets the state of a {Describe(target)}, which a state dict never does");
    }

    private void SetItem(object? target, object? key, object? value)
    {
        if (target is not Dictionary<object, object?> dict) throw Refuse($"sets an item of a {Describe(target)}");
        if (key is null or Dictionary<object, object?> or List<object?>) throw Refuse($"uses a {Describe(key)} as a key");
        dict[key] = value;
    }

    private List<object?> AsList(object? target) => target as List<object?> ?? throw Refuse($"appends to a {Describe(target)}");

    private long[] Longs(Tuple t) =>
        t.Items.Select(i => i is long v ? v : throw Refuse($"has a tensor size or stride {Describe(i)}, not an integer")).ToArray();

    private object? Recall(long index) => _memo.TryGetValue(index, out var value) ? value : throw Refuse($"recalls memo entry {index}, which was never stored");

    private void Push(object? value) => _stack.Add(value);

    private object? Peek() => _stack.Count > 0 && _stack[^1] is not Mark ? _stack[^1] : throw Refuse("reads an empty stack");

    private object? Pop()
    {
        var value = Peek();
        _stack.RemoveAt(_stack.Count - 1);
        return value;
    }

    private List<object?> PopMark()
    {
        if (_marks.Count == 0) throw Refuse("closes a MARK that was never opened");
        var start = _marks.Pop();
        var items = _stack.GetRange(start + 1, _stack.Count - start - 1);
        _stack.RemoveRange(start, _stack.Count - start);
        return items;
    }

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count < 0 || _at + count > _data.Length) throw Refuse("ends in the middle of an opcode");
        var span = _data.AsSpan(_at, count);
        _at += count;
        return span;
    }

    private int Length(ulong length) => length <= int.MaxValue ? (int)length : throw Refuse("has a string longer than the file");

    private string Text(int length) => Encoding.UTF8.GetString(Take(length));

    private string Line()
    {
        var end = Array.IndexOf(_data, (byte)'\n', _at);
        if (end < 0) throw Refuse("has a GLOBAL without its newline");
        var text = Encoding.ASCII.GetString(_data, _at, end - _at);
        _at = end + 1;
        return text;
    }

    private long Long(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > 8) throw Refuse("has an integer wider than 64 bits");
        long value = 0;
        for (var i = bytes.Length - 1; i >= 0; i--) value = (value << 8) | bytes[i];
        // Two's complement over the bytes given: sign-extend from the top one.
        if (bytes.Length is > 0 and < 8 && (bytes[^1] & 0x80) != 0) value -= 1L << (8 * bytes.Length);
        return value;
    }

    private InvalidDataException Refuse(string what) => new($"{_what} {what}");

    private static string Describe(object? value) => value switch
    {
        null => "None",
        Global g => $"reference to {g.Name}",
        Tuple t => $"tuple of {t.Items.Length}",
        Dictionary<object, object?> => "dict",
        List<object?> => "list",
        PickledTensor => "tensor",
        Storage => "storage",
        string s => $"string '{s}'",
        _ => value.GetType().Name.ToLowerInvariant(),
    };
}
