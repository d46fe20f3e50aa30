#!/usr/bin/env python3
"""Runs our CUDA kernels' C (DecodeAttentionCuda, LayerNormCuda) on the CPU, for checking a change to their logic on a machine
without a GPU before a GPU call: each kernel source is taken from its C# file, its PTX conversions are replaced by C++ ones,
and g++ (12 or later: std::barrier, _Float16) builds it with a thread per CUDA thread, a barrier per block and per warp
(__syncthreads, __shfl_xor_sync), blocks one after another. Each case is compared with the same arithmetic in double precision:
every value within two units in the last place of its type at the reference's magnitude (at least 1). Exit status 1 if any
case differs. NVRTC's own compilation is not checked here: `actorinfer version` on a GPU does that.
Usage: python3 scripts/kernels-on-cpu.py"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = os.path.join(ROOT, "src", "ActorInfer.Model", "Layers")


def raw_string(text, start):
    """The content of the C# raw string literal that opens after `start`, its indentation removed."""
    i = text.index('"""', text.index(start)) + 3
    j = text.index('"""', i)
    lines = text[i:j].split("\n")[1:-1]
    indent = min(len(l) - len(l.lstrip()) for l in lines if l.strip())
    return "\n".join(l[indent:] for l in lines)


def source(file, start, values):
    text = raw_string(open(os.path.join(LAYERS, file)).read(), start)
    values["CudaSource.HalfWidening"] = raw_string(open(os.path.join(LAYERS, "CudaSource.cs")).read(), "HalfWidening")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    # The PTX helpers give way to C++ ones (declared in the prelude); pack's specializations span three lines.
    text = re.sub(r"template <> __device__ __forceinline__ u32 pack<(false|true)>\(float a, float b\) \{.*?\n\}\n", "", text, flags=re.S)
    return "\n".join(l for l in text.split("\n") if "asm(" not in l)


PRELUDE = r"""
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>
using std::min;
#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(x)
#define __restrict__
#define _Pragma(x)
#define fmaxf(a, b) std::fmax(a, b)
struct D3 { int x = 0, y = 0, z = 0; };
thread_local D3 threadIdx;
D3 blockIdx, gridDim, blockDim;
inline float __int_as_float(unsigned x) { float f; std::memcpy(&f, &x, 4); return f; }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
std::barrier<>* block_barrier;
std::barrier<>* warp_barrier[8];
float lanes[8][32];
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int o) {
    const int t = threadIdx.x, w = t >> 5, l = t & 31;
    lanes[w][l] = v;
    warp_barrier[w]->arrive_and_wait();
    const float r = lanes[w][l ^ o];
    warp_barrier[w]->arrive_and_wait();
    return r;
}
typedef unsigned short u16;
typedef unsigned int u32;
inline float half_to_float(u16 h) { _Float16 x; std::memcpy(&x, &h, 2); return (float)x; }
inline u16 float_to_half(float f) { _Float16 x = (_Float16)f; u16 h; std::memcpy(&h, &x, 2); return h; }
inline u16 float_to_bf16(float f) { unsigned x; std::memcpy(&x, &f, 4); return (u16)((x + 0x7fff + ((x >> 16) & 1)) >> 16); }
template <class F> void launch(int gx, int gy, int threads, F body) {
    gridDim.x = gx; gridDim.y = gy; blockDim.x = threads;
    for (int by = 0; by < gy; by++)
        for (int bx = 0; bx < gx; bx++) {
            blockIdx.x = bx; blockIdx.y = by;
            std::barrier<> block(threads);
            block_barrier = &block;
            for (int w = 0; w < threads / 32; w++) warp_barrier[w] = new std::barrier<>(32);
            std::vector<std::thread> ts;
            for (int t = 0; t < threads; t++) ts.emplace_back([&, t] { threadIdx.x = t; body(); });
            for (auto& t : ts) t.join();
            for (int w = 0; w < threads / 32; w++) delete warp_barrier[w];
        }
}
"""

HELPERS = r"""
template <> inline float lo<false>(u32 x) { return half_to_float((u16)(x & 0xffffu)); }
template <> inline float hi<false>(u32 x) { return half_to_float((u16)(x >> 16)); }
"""
ATTENTION_HELPERS = HELPERS + r"""
template <bool BF> inline u16 store1(float f);
template <> inline u16 store1<false>(float f) { return float_to_half(f); }
template <> inline u16 store1<true>(float f) { return float_to_bf16(f); }
inline float ex2(float x) { return std::exp2(x); }
"""
NORM_HELPERS = HELPERS + r"""
template <bool BF> inline u32 pack(float a, float b);
template <> inline u32 pack<false>(float a, float b) { return (u32)float_to_half(a) | ((u32)float_to_half(b) << 16); }
template <> inline u32 pack<true>(float a, float b) { return (u32)float_to_bf16(a) | ((u32)float_to_bf16(b) << 16); }
inline float rsqrt_approx(float x) { return 1.0f / std::sqrt(x); }
"""

ATTENTION_MAIN = r"""
int main(int argc, char** argv) {
    const int B = atoi(argv[1]), KVH = atoi(argv[2]), L = atoi(argv[3]), padded = atoi(argv[4]), bf = atoi(argv[5]);
    const int H = KVH * GROUP, D = DIM, capacity = L + 200;
    std::mt19937 rng(5);
    std::normal_distribution<float> normal;
    auto enc = [&](float f) { return bf ? float_to_bf16(f) : float_to_half(f); };
    auto dec = [&](u16 h) { return bf ? __int_as_float(((u32)h) << 16) : half_to_float(h); };
    // q as views of a [B, 1, 3 H D] projection; keys and values a prefix of a longer cache.
    std::vector<u16> q((size_t)B * 3 * H * D), k((size_t)B * KVH * capacity * D), v(k.size());
    for (auto& x : q) x = enc(2 * normal(rng));
    for (auto& x : k) x = enc(normal(rng));
    for (auto& x : v) x = enc(normal(rng));
    const long long qsb = 3LL * H * D, qsh = D, ksb = (long long)KVH * capacity * D, ksh = (long long)capacity * D, ksl = D;
    std::vector<unsigned char> mask((size_t)B * L, 1), whole((size_t)B * capacity, 1);
    if (padded) for (int b = 0; b < B; b++) for (int t = 0; t < b * L / (2 * B); t++) mask[(size_t)b * L + t] = 0, whole[(size_t)b * capacity + t] = 0;
    const int splits = (L + CHUNK - 1) / CHUNK;
    std::vector<float> part((size_t)B * H * splits * (D + 2));
    std::vector<u16> out((size_t)B * H * D);
    const float scale2 = (float)(1.0 / std::sqrt((double)D) / std::log(2.0));
    const unsigned char* m = padded ? mask.data() : nullptr;
    // The chunks count themselves per (sequence, key/value head); the last merges and leaves its counter at zero.
    std::vector<unsigned> done((size_t)B * KVH, 0u);
    launch(B * KVH, splits, THREADS, [&] {
        if (bf) decode_bf16(q.data(), qsb, qsh, k.data(), ksb, ksh, ksl, v.data(), ksb, ksh, ksl, m, (long long)L, part.data(), out.data(), H, KVH, L, nullptr, scale2,
            nullptr, nullptr, 0, 0, -1, k.data(), v.data(), done.data());
        else decode_half(q.data(), qsb, qsh, k.data(), ksb, ksh, ksl, v.data(), ksb, ksh, ksl, m, (long long)L, part.data(), out.data(), H, KVH, L, nullptr, scale2,
            nullptr, nullptr, 0, 0, -1, k.data(), v.data(), done.data());
    });
    // The launch a captured layer makes: over the whole cache, the filled length read from memory, and the step's key and value
    // (index L - 1) taken from rows of their own and written into the cache by the kernel. Same bits asked, and the rows written.
    std::vector<u16> nk((size_t)B * 3 * KVH * D), nv(nk.size()), k2(k), v2(v);
    const long long nsb = 3LL * KVH * D, nsh = D;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < KVH; g++)
            for (int i = 0; i < D; i++) {
                const size_t at = (size_t)b * ksb + (size_t)g * ksh + (size_t)(L - 1) * ksl + i;
                nk[b * nsb + g * nsh + i] = k[at]; nv[b * nsb + g * nsh + i] = v[at];
                k2[at] = enc(1000.0f); v2[at] = enc(-1000.0f);
            }
    const int wsplits = (capacity + CHUNK - 1) / CHUNK;
    const long long lastIndex = L - 1;
    std::vector<float> wpart((size_t)B * H * wsplits * (D + 2));
    std::vector<u16> wout((size_t)B * H * D, 0x7e00);
    const unsigned char* wm = padded ? whole.data() : nullptr;
    launch(B * KVH, wsplits, THREADS, [&] {
        if (bf) decode_bf16(q.data(), qsb, qsh, k2.data(), ksb, ksh, ksl, v2.data(), ksb, ksh, ksl, wm, (long long)capacity, wpart.data(), wout.data(), H, KVH, capacity, &lastIndex, scale2,
            nk.data(), nv.data(), nsb, nsh, -1, k2.data(), v2.data(), done.data());
        else decode_half(q.data(), qsb, qsh, k2.data(), ksb, ksh, ksl, v2.data(), ksb, ksh, ksl, wm, (long long)capacity, wpart.data(), wout.data(), H, KVH, capacity, &lastIndex, scale2,
            nk.data(), nv.data(), nsb, nsh, -1, k2.data(), v2.data(), done.data());
    });
    const bool same = std::memcmp(out.data(), wout.data(), out.size() * sizeof(u16)) == 0 && k2 == k && v2 == v;
    for (unsigned c : done) if (c != 0u) { printf("a counter was left at %u\n", c); return 1; }
    double worst = 0; long outside = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int g = h / GROUP;
            std::vector<double> s(L);
            double top = -1e300;
            for (int t = 0; t < L; t++) {
                double dot = 0;
                for (int i = 0; i < D; i++) dot += (double)dec(q[b * qsb + h * qsh + i]) * dec(k[b * ksb + g * ksh + t * ksl + i]);
                s[t] = mask[(size_t)b * L + t] ? dot / std::sqrt((double)D) : -1e300;
                top = std::max(top, s[t]);
            }
            double z = 0;
            for (int t = 0; t < L; t++) { s[t] = s[t] < -1e299 ? 0 : std::exp(s[t] - top); z += s[t]; }
            for (int i = 0; i < D; i++) {
                double r = 0;
                for (int t = 0; t < L; t++) r += s[t] * dec(v[b * ksb + g * ksh + t * ksl + i]);
                r /= z;
                const double e = std::fabs(dec(out[((size_t)b * H + h) * D + i]) - r) / std::max(1.0, std::fabs(r));
                worst = std::max(worst, e);
                if (e > 2 * (bf ? 1.0 / 128 : 1.0 / 1024)) outside++;
            }
        }
    printf("attention d %d, group %d, batch %d, kv heads %d, length %d%s%s (%d chunks): %s (at most %.3g relative); over the capacity (%d chunks) with the length in memory and the step's row written: %s\n",
        DIM, GROUP, B, KVH, L, padded ? ", padded" : "", bf ? ", bfloat16" : ", float16", splits, outside ? "DIFFERS" : "agrees", worst, wsplits,
        same ? "the same bits" : "DIFFERS");
    return outside != 0 || !same;
}
"""

NORM_MAIN = r"""
int main(int argc, char** argv) {
    const int rows = atoi(argv[1]), n = atoi(argv[2]), bf = atoi(argv[3]);
    std::mt19937 rng(3);
    std::normal_distribution<float> normal;
    auto enc = [&](float f) { return bf ? float_to_bf16(f) : float_to_half(f); };
    auto dec = [&](u16 h) { return bf ? __int_as_float(((u32)h) << 16) : half_to_float(h); };
    std::vector<u16> x((size_t)rows * n), w(n), b(n), y((size_t)rows * n);
    for (auto& e : x) e = enc(3 * normal(rng) + 1);
    for (auto& e : w) e = enc(0.5f * normal(rng) + 1);
    for (auto& e : b) e = enc(0.1f * normal(rng));
    const int vectors = (n / 8 + THREADS - 1) / THREADS;
    launch(rows, 1, THREADS, [&] {
        auto* f = vectors <= 1 ? (bf ? layer_norm_bf16_1 : layer_norm_half_1) : vectors <= 2 ? (bf ? layer_norm_bf16_2 : layer_norm_half_2)
            : vectors <= 4 ? (bf ? layer_norm_bf16_4 : layer_norm_half_4) : (bf ? layer_norm_bf16_8 : layer_norm_half_8);
        f(x.data(), w.data(), b.data(), y.data(), n, 1e-5f);
    });
    double worst = 0; long outside = 0;
    for (int r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        for (int i = 0; i < n; i++) mean += dec(x[(size_t)r * n + i]);
        mean /= n;
        for (int i = 0; i < n; i++) { const double d = dec(x[(size_t)r * n + i]) - mean; var += d * d; }
        var /= n;
        for (int i = 0; i < n; i++) {
            const double ref = (dec(x[(size_t)r * n + i]) - mean) / std::sqrt(var + 1e-5) * dec(w[i]) + dec(b[i]);
            const double e = std::fabs(dec(y[(size_t)r * n + i]) - ref) / std::max(1.0, std::fabs(ref));
            worst = std::max(worst, e);
            if (e > 2 * (bf ? 1.0 / 128 : 1.0 / 1024)) outside++;
        }
    }
    printf("layer norm %d rows of %d%s: %s (at most %.3g relative)\n", rows, n, bf ? ", bfloat16" : ", float16", outside ? "DIFFERS" : "agrees", worst);
    return outside != 0;
}
"""

# (head size, group) -> [(batch, kv heads, length, padded, bfloat16)]
ATTENTION_CASES = {
    (128, 1): [(2, 2, 300, 1, 0), (3, 1, 128, 0, 1), (2, 1, 1, 0, 0)],
    (16, 2): [(3, 2, 33, 1, 0), (2, 1, 700, 1, 1)],
    (32, 4): [(2, 2, 129, 1, 0)],
    (64, 4): [(2, 1, 300, 0, 1)],
    (128, 8): [(1, 2, 97, 1, 0)],
    (256, 1): [(2, 2, 130, 0, 0)],
}
NORM_CASES = [(3, 4096, 0), (2, 7168, 0), (2, 64, 0), (2, 12288, 1), (1, 16384, 0), (2, 2048, 1)]


def build(work, name, program):
    path = os.path.join(work, name)
    with open(path + ".cpp", "w") as f:
        f.write(program)
    subprocess.run(["g++", "-std=c++20", "-O1", "-pthread", "-w", path + ".cpp", "-o", path], check=True)
    return path


def main():
    failed = 0
    with tempfile.TemporaryDirectory() as work:
        for (dim, group), cases in ATTENTION_CASES.items():
            kernel = source("DecodeAttentionCuda.cs", "internal static string Source(int headDim, int group)",
                            {"headDim": dim, "group": group, "Chunk": 128, "Threads": 128})
            kernel = kernel.replace("template <bool BF> __device__ __forceinline__ void unpack", ATTENTION_HELPERS + "\ntemplate <bool BF> __device__ __forceinline__ void unpack", 1)
            binary = build(work, f"attention_{dim}_{group}", PRELUDE + kernel + ATTENTION_MAIN)
            for case in cases:
                failed += subprocess.run([binary, *map(str, case)]).returncode != 0
        kernel = source("LayerNormCuda.cs", "internal static string Source()", {"Threads": 256})
        kernel = kernel.replace("// The block's sum", NORM_HELPERS + "\n// The block's sum", 1)
        binary = build(work, "layer_norm", PRELUDE + kernel + NORM_MAIN)
        for case in NORM_CASES:
            failed += subprocess.run([binary, *map(str, case)]).returncode != 0
    print(f"{failed} case(s) differ" if failed else "every case agrees")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
