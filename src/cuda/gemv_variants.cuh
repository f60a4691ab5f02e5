// Compile-time variants of the skinny GEMV kernels (gemv.cu, int4_gemv.cu): the batch size M the
// kernel is built for (1, 2, 4, 8; a batch of 3 runs as 4, 5-7 as 8), the weight rows R a warp
// owns and the chunks U a lane loads per row and pipeline step. dispatch_gemv_variant() maps the
// run-time choice onto the instantiated set. Internal to src/cuda/ .cu files.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "common/check.h"
#include "cuda/element.cuh"
#include "cuda/gemv.h"

namespace strata::cuda {

template <int V>
using IntC = std::integral_constant<int, V>;

// a[s] for a segment index s of a kernel parameter, without copying the parameter to local memory.
template <typename P>
__device__ __forceinline__ P pick(const P (&a)[kGemvMaxSegments], int s) {
  return s == 0 ? a[0] : s == 1 ? a[1] : a[2];
}

// silu(gate) * up of a gated batch (GemvBatch::gated) as the separate launches compute it: both
// products rounded to T, then SiluMulOp's arithmetic (elementwise.cu).
template <typename T>
__device__ __forceinline__ float silu_times(float gate, float up) {
  const float gr = to_float(from_float<T>(gate)), ur = to_float(from_float<T>(up));
  return gr / (1.0f + __expf(-gr)) * ur;
}

// A warp's epilogue: sums each lane's partial products of rows row0 + r against activation rows
// i < m over the warp, adds the bias, applies the ReLU if asked and stores the rounded results.
// A gated batch's warp (R = 2) holds gate row row0 and up row row0: it stores silu(gate) * up.
template <typename T, int R, int M>
__device__ __forceinline__ void store_rows(const float (&acc)[R][M], const GemvGrid& g, int seg,
                                           int64_t row0, int64_t n, int m, int lane) {
  const float* __restrict__ bias = pick(g.bias, seg);
  T* __restrict__ y = static_cast<T*>(pick(g.y, seg));
  if constexpr (R == 2) {
    if (g.gated) {
#pragma unroll
      for (int i = 0; i < M; ++i) {
        const float gate = warp_sum(acc[0][i]), up = warp_sum(acc[1][i]);
        if (lane == 0 && i < m && row0 < n)
          y[i * n + row0] = from_float<T>(silu_times<T>(
              gate + (bias ? bias[row0] : 0.0f), up + (g.bias[1] ? g.bias[1][row0] : 0.0f)));
      }
      return;
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int i = 0; i < M; ++i) {
      const float v = warp_sum(acc[r][i]);
      const int64_t col = row0 + r;
      if (lane == 0 && i < m && col < n) {
        float out = v + (bias ? bias[col] : 0.0f);
        if (g.relu) out = fmaxf(out, 0.0f);
        y[i * n + col] = from_float<T>(out);
      }
    }
  }
}

// The kernel batch size for m activation rows.
inline int gemv_kernel_rows(int64_t m) { return m <= 1 ? 1 : m == 2 ? 2 : m <= 4 ? 4 : 8; }

namespace gemv_detail {
template <int M, int R, typename F>
bool with_u(int u, F& f) {
  switch (u) {
    case 1: f(IntC<M>{}, IntC<R>{}, IntC<1>{}); return true;
    case 2: f(IntC<M>{}, IntC<R>{}, IntC<2>{}); return true;
    case 4:
      if constexpr (M < 8) {
        f(IntC<M>{}, IntC<R>{}, IntC<4>{});
        return true;
      }
      return false;
    default: return false;
  }
}
template <int M, typename F>
bool with_r(int r, int u, F& f) {
  switch (r) {
    case 1: return with_u<M, 1>(u, f);
    case 2: return with_u<M, 2>(u, f);
    case 4: return with_u<M, 4>(u, f);
    default: return false;
  }
}
}  // namespace gemv_detail

// Calls f(IntC<M>, IntC<R>, IntC<U>) for the batch size m and the variant v (zero fields already
// replaced by defaults); false when that variant is not built.
template <typename F>
bool dispatch_gemv_variant(int64_t m, GemvVariant v, F&& f) {
  switch (gemv_kernel_rows(m)) {
    case 1: return gemv_detail::with_r<1>(v.rows_per_warp, v.chunks_per_step, f);
    case 2: return gemv_detail::with_r<2>(v.rows_per_warp, v.chunks_per_step, f);
    case 4: return gemv_detail::with_r<4>(v.rows_per_warp, v.chunks_per_step, f);
    default: return gemv_detail::with_r<8>(v.rows_per_warp, v.chunks_per_step, f);
  }
}

// Launches variant v of a GEMV kernel (zero fields from default_gemv_variant(m, int4)) over
// blocks of `warps` warps: calls launch(IntC<M>, IntC<R>, IntC<U>, grid) unless the grid is
// empty. STRATA_CHECKs that the variant is built; `what` names the kernel in that message.
template <typename F>
void launch_gemv_variant(const char* what, bool int4, const GemvBatch& batch, int64_t m,
                         bool relu, int warps, GemvVariant v, F&& launch) {
  const GemvVariant def = default_gemv_variant(m, int4);
  if (v.rows_per_warp == 0) v.rows_per_warp = def.rows_per_warp;
  if (v.chunks_per_step == 0) v.chunks_per_step = def.chunks_per_step;
  const bool built = dispatch_gemv_variant(m, v, [&](auto M, auto R, auto U) {
    const GemvGrid g = gemv_grid(batch, int64_t{warps} * decltype(R)::value, relu);
    if (g.start[kGemvMaxSegments] != 0) launch(M, R, U, g);
  });
  STRATA_CHECK(built, std::string(what) + ": no kernel for " + std::to_string(v.rows_per_warp) +
                          " rows per warp and " + std::to_string(v.chunks_per_step) +
                          " chunks per step at " + std::to_string(m) + " rows");
}

}  // namespace strata::cuda
