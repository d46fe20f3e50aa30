using System.Buffers;
using System.Runtime.Serialization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Akka.Serialization;

namespace ActorInfer.Actors.Jobs;

/// <summary>
/// Writes the job store's snapshot as plain UTF-8 JSON. A snapshot holds every job the store keeps, so it is large
/// (megabytes under steady traffic), and it is written again and again: Akka's default JSON serializer builds it as a
/// UTF-16 string with a type name on every object and then copies it into bytes, leaving three to four times its size
/// of garbage on the large-object heap each time. Here it is written in small chunks, without type names, and copied
/// once into the array the snapshot store keeps. Snapshots written by the default serializer still load (Akka picks the serializer a
/// snapshot was written with).
/// </summary>
public sealed class JobSnapshotSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    private const string SnapshotManifest = "job-snapshot-v1";

    private static readonly JsonSerializerOptions Options = new()
    {
        // Log-probabilities in checkpoints can be -Infinity.
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Fixed, so that snapshots on disk keep naming this serializer whatever else the node configures.</summary>
    public override int Identifier => 5127;

    /// <summary>The HOCON that binds the job store's snapshot to this serializer.</summary>
    public static string Config => $$"""
        akka.actor {
          serializers.actorinfer-job-snapshot = "{{TypeName<JobSnapshotSerializer>()}}"
          serialization-bindings {
            "{{TypeName<JobEvents.Snapshot>()}}" = actorinfer-job-snapshot
          }
        }
        """;

    private static string TypeName<T>() => $"{typeof(T).FullName}, {typeof(T).Assembly.GetName().Name}";

    public override string Manifest(object o) => o is JobEvents.Snapshot
        ? SnapshotManifest
        : throw new ArgumentException($"{o.GetType()} is not serialized by {nameof(JobSnapshotSerializer)}", nameof(o));

    public override byte[] ToBinary(object obj)
    {
        if (obj is not JobEvents.Snapshot snapshot)
            throw new ArgumentException($"{obj.GetType()} is not serialized by {nameof(JobSnapshotSerializer)}", nameof(obj));
        var buffer = new ChunkedBufferWriter();
        using (var writer = new Utf8JsonWriter(buffer))
            JsonSerializer.Serialize(writer, snapshot, Options);
        return buffer.ToArray();
    }

    public override object FromBinary(byte[] bytes, string manifest) => manifest == SnapshotManifest
        ? JsonSerializer.Deserialize<JobEvents.Snapshot>(bytes, Options) ?? throw new SerializationException("an empty job snapshot")
        : throw new SerializationException($"unknown manifest {manifest} for {nameof(JobSnapshotSerializer)}");

    /// <summary>
    /// An <see cref="IBufferWriter{T}"/> over chunks below the large-object threshold, so that writing leaves no large
    /// garbage behind: only <see cref="ToArray"/>, of the exact size, is a large array. (Pooling large buffers instead
    /// keeps several of each size alive on the large-object heap, one set per thread that ever wrote a snapshot.)
    /// </summary>
    private sealed class ChunkedBufferWriter : IBufferWriter<byte>
    {
        private const int ChunkBytes = 64 * 1024;
        private readonly List<(byte[] Chunk, int Used)> _full = [];
        private byte[] _current = new byte[ChunkBytes];
        private int _used;

        public void Advance(int count) => _used += count;

        public Memory<byte> GetMemory(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return _current.AsMemory(_used);
        }

        public Span<byte> GetSpan(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return _current.AsSpan(_used);
        }

        public byte[] ToArray()
        {
            var bytes = new byte[_full.Sum(c => c.Used) + _used];
            var at = 0;
            foreach (var (chunk, used) in _full.Append((_current, _used)))
            {
                chunk.AsSpan(0, used).CopyTo(bytes.AsSpan(at));
                at += used;
            }
            return bytes;
        }

        private void Reserve(int sizeHint)
        {
            if (_current.Length - _used >= Math.Max(sizeHint, 1)) return;
            _full.Add((_current, _used));
            _current = new byte[Math.Max(ChunkBytes, sizeHint)];
            _used = 0;
        }
    }
}
