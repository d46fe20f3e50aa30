// Compiled by MSBuild's RoslynCodeTaskFactory (see Directory.Build.targets); not part of any project.
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class ActorInferMarkGlibcxxWeak : Task
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;
    private const string WeakVersion = "GLIBCXX_3.4.32";

    [Required]
    public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();

    public override bool Execute()
    {
        foreach (var item in Files)
        {
            var path = item.ItemSpec;
            try
            {
                var result = Patch(path);
                Log.LogMessage(MessageImportance.Low, "{0}: {1}", path, result);
            }
            catch (Exception ex)
            {
                Log.LogError("Cannot patch {0}: {1}", path, ex.Message);
                return false;
            }
        }
        return true;
    }

    private static string Patch(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 64 || bytes[0] != 0x7f || bytes[1] != (byte)'E' || bytes[2] != (byte)'L' || bytes[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (bytes[4] != 2 || bytes[5] != 1)
            throw new InvalidDataException("not a little-endian 64-bit ELF file");

        var sectionHeaderOffset = (long)BitConverter.ToUInt64(bytes, 0x28);
        int sectionHeaderSize = BitConverter.ToUInt16(bytes, 0x3A);
        int sectionCount = BitConverter.ToUInt16(bytes, 0x3C);
        var changed = 0;
        var found = false;
        for (var s = 0; s < sectionCount; s++)
        {
            var header = (int)(sectionHeaderOffset + (long)s * sectionHeaderSize);
            if (BitConverter.ToUInt32(bytes, header + 4) != ShtGnuVerneed) continue;
            var offset = (int)BitConverter.ToUInt64(bytes, header + 0x18);
            var link = (int)BitConverter.ToUInt32(bytes, header + 0x28);
            var entries = (int)BitConverter.ToUInt32(bytes, header + 0x2C); // sh_info: number of Verneed entries
            var strtabHeader = (int)(sectionHeaderOffset + (long)link * sectionHeaderSize);
            var strtab = (int)BitConverter.ToUInt64(bytes, strtabHeader + 0x18);

            var need = offset;
            for (var n = 0; n < entries; n++)
            {
                int auxCount = BitConverter.ToUInt16(bytes, need + 2);
                var aux = need + (int)BitConverter.ToUInt32(bytes, need + 8);
                for (var a = 0; a < auxCount; a++)
                {
                    var name = ReadString(bytes, strtab + (int)BitConverter.ToUInt32(bytes, aux + 8));
                    if (name == WeakVersion)
                    {
                        found = true;
                        var flags = BitConverter.ToUInt16(bytes, aux + 4);
                        if ((flags & VerFlgWeak) == 0)
                        {
                            flags |= VerFlgWeak;
                            bytes[aux + 4] = (byte)(flags & 0xff);
                            bytes[aux + 5] = (byte)(flags >> 8);
                            changed++;
                        }
                    }
                    aux += (int)BitConverter.ToUInt32(bytes, aux + 12);
                }
                need += (int)BitConverter.ToUInt32(bytes, need + 12);
            }
        }
        if (changed > 0)
        {
            var temp = path + ".patching";
            File.WriteAllBytes(temp, bytes);
            File.Copy(temp, path, true);
            File.Delete(temp);
            return "marked " + WeakVersion + " weak";
        }
        return found ? "already patched" : "no " + WeakVersion + " requirement";
    }

    private static string ReadString(byte[] bytes, int start)
    {
        var end = start;
        while (end < bytes.Length && bytes[end] != 0) end++;
        return Encoding.ASCII.GetString(bytes, start, end - start);
    }
}
