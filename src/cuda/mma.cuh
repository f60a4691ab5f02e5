// Tensor-core pieces shared by the skinny GEMMs (gemv_mma.cu, int4_gemv_mma.cu) and the decode
// attention: one mma.sync m16n8k16 product with fp32 accumulation, and the skinny GEMMs' block
// epilogue. Fragment layout of lane (g, t) = (lane / 4, lane % 4): A registers (row g, k 2t..2t+1),
// (row g + 8, k 2t..2t+1), (row g, k 2t+8..2t+9), (row g + 8, k 2t+8..2t+9); B registers
// (k 2t..2t+1, column g), (k 2t+8..2t+9, column g); accumulators (row g, columns 2t, 2t + 1),
// (row g + 8, columns 2t, 2t + 1). Internal to src/cuda/ .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/element.cuh"
#include "cuda/gemv.h"
#include "cuda/gemv_variants.cuh"

namespace strata::cuda {

// Weight rows a skinny GEMM block owns.
inline constexpr int kMmaTileRows = 16;

// c += A · B for T = __half or __nv_bfloat16 operands.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                          uint32_t a3, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
#else
  __trap();  // the launchers refuse devices below compute capability 8.0
#endif
}

// The rows of this block of a skinny GEMM for lane group g: its segment seg (n rows) and, of
// that segment, rows row0 + g and row0 + g + 8, or for a gated batch row row0 + g of the gate
// (segment 0) and of the up product (segment 1), row0 counting 8 rows a block. Rows past n read
// row n - 1.
struct MmaRows {
  int seg;
  int64_t n, row0, lo, hi;
  const void* w_lo;
  const void* w_hi;
};
__device__ __forceinline__ MmaRows mma_rows(const GemvGrid& g, int gq) {
  MmaRows r;
  r.seg = blockIdx.x >= g.start[2] ? 2 : blockIdx.x >= g.start[1] ? 1 : 0;
  const unsigned start = r.seg == 2 ? g.start[2] : r.seg == 1 ? g.start[1] : g.start[0];
  r.n = pick(g.n, r.seg);
  r.row0 = int64_t{blockIdx.x - start} * (g.gated ? kMmaTileRows / 2 : kMmaTileRows);
  r.lo = min(r.row0 + gq, r.n - 1);
  r.hi = g.gated ? r.lo : min(r.row0 + gq + 8, r.n - 1);
  r.w_lo = pick(g.w, r.seg);
  r.w_hi = g.gated ? g.w[1] : r.w_lo;
  return r;
}

// The skinny GEMMs' epilogue: a block of W warps owns the weight rows of mma_rows(); each warp
// holds NT accumulator tiles over its share of k. Adds the warps' sums through `partial` (shared
// memory), then the bias, the ReLU if asked (or for a gated batch silu(gate) * up), and stores
// the rounded results. Accumulator q of lane (g, t) in tile j: weight row g (+ 8 for q >= 2),
// activation row 8 j + 2 t (+ 1 for odd q).
template <typename T, int NT, int W>
__device__ __forceinline__ void store_mma_tiles(float (&partial)[W][NT * 4][32],
                                                const float (&acc)[NT][4], const GemvGrid& g,
                                                int seg, int64_t row0, int64_t n, int m) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int q = 0; q < 4; ++q) partial[warp][j * 4 + q][lane] = acc[j][q];
  __syncthreads();
  const float* __restrict__ bias = pick(g.bias, seg);
  T* __restrict__ y = static_cast<T*>(pick(g.y, seg));
  for (int e = threadIdx.x; e < NT * 4 * 32; e += W * 32) {
    const int jq = e / 32, l = e % 32, q = jq % 4, j = jq / 4;
    if (g.gated && q >= 2) continue;  // the up half, read with its gate
    float v = 0.0f;
#pragma unroll
    for (int wp = 0; wp < W; ++wp) v += partial[wp][jq][l];
    const int64_t col = row0 + l / 4 + (q >= 2 ? 8 : 0);
    const int i = 8 * j + 2 * (l % 4) + (q & 1);
    if (i >= m || col >= n) continue;
    float out = v + (bias ? bias[col] : 0.0f);
    if (g.gated) {
      float up = g.bias[1] ? g.bias[1][col] : 0.0f;
#pragma unroll
      for (int wp = 0; wp < W; ++wp) up += partial[wp][jq + 2][l];
      out = silu_times<T>(out, up);
    } else if (g.relu) {
      out = fmaxf(out, 0.0f);
    }
    y[int64_t{i} * n + col] = from_float<T>(out);
  }
}

// Launches variant v of a skinny GEMM kernel (zero fields from def) over blocks of kMmaTileRows
// weight rows: calls launch(IntC<NT>, IntC<U>, IntC<W>, grid) for NT tiles of 8 activation rows
// (m <= 16), U chunks a lane and step and W warps a block, unless the grid is empty.
// STRATA_CHECKs that the variant is built; `what` names the kernel in that message.
template <typename F>
void launch_mma_variant(const char* what, const GemvBatch& batch, int64_t m, bool relu,
                        GemvMmaVariant v, GemvMmaVariant def, F&& launch) {
  if (v.warps == 0) v.warps = def.warps;
  if (v.chunks_per_step == 0) v.chunks_per_step = def.chunks_per_step;
  const GemvGrid g = gemv_grid(batch, kMmaTileRows, relu);
  if (g.start[kGemvMaxSegments] == 0) return;
  const auto with_tiles = [&](auto nt) {
    switch (v.warps * 10 + v.chunks_per_step) {
      case 41:
        launch(nt, IntC<1>{}, IntC<4>{}, g);
        return;
      case 42:
        launch(nt, IntC<2>{}, IntC<4>{}, g);
        return;
      case 81:
        launch(nt, IntC<1>{}, IntC<8>{}, g);
        return;
      case 82:
        launch(nt, IntC<2>{}, IntC<8>{}, g);
        return;
      default:
        STRATA_CHECK(false, std::string(what) + ": no kernel for " + std::to_string(v.warps) +
                                " warps and " + std::to_string(v.chunks_per_step) +
                                " chunks per step");
    }
  };
  if (m <= 8)
    with_tiles(IntC<1>{});
  else
    with_tiles(IntC<2>{});
}

}  // namespace strata::cuda
