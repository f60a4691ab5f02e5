// Rotary position embeddings: the inverse-frequency table (default, linear and llama3 scaling) and
// the CPU rotation. Arithmetic follows transformers' fp32 code step by step (modeling_rope_utils.py
// and modeling_llama.py's apply_rotary_pos_emb), so tables and angles match it bit for bit where
// the libm functions agree.

#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "common/check.h"
#include "compute/cpu_backend.h"

namespace strata::compute {

RopeTable make_rope_table(const model::RopeConfig& rope, int64_t head_dim) {
  STRATA_CHECK(
      head_dim > 0 && head_dim % 2 == 0,
      "make_rope_table: head_dim must be even and positive, got " + std::to_string(head_dim));
  const int64_t half = head_dim / 2;
  RopeTable table;
  table.head_dim = head_dim;
  table.inv_freq.resize(static_cast<size_t>(half));

  // transformers: inv_freq = 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all in fp32.
  // The exponent is an fp32 division; base ** exponent is computed here in double and rounded to
  // float (the correctly rounded fp32 power, which torch's powf gives to within an ulp); the
  // reciprocal is an fp32 division. The base is cast to fp32 as torch does with the scalar.
  const float base = static_cast<float>(rope.theta);
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float power =
        static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
    table.inv_freq[i] = 1.0f / power;
  }

  const float factor = static_cast<float>(rope.factor);
  switch (rope.type) {
    case model::RopeType::kDefault:
      break;
    case model::RopeType::kLinear:
      for (float& f : table.inv_freq) f = f / factor;
      break;
    case model::RopeType::kLlama3: {
      // transformers' _compute_llama3_parameters, with its Python-double scalars cast to fp32 when
      // they meet the fp32 tensor, and the same operation order.
      const double old_context_len = static_cast<double>(rope.original_max_position_embeddings);
      const float low_freq_wavelen = static_cast<float>(old_context_len / rope.low_freq_factor);
      const float high_freq_wavelen = static_cast<float>(old_context_len / rope.high_freq_factor);
      const float two_pi = static_cast<float>(2 * std::numbers::pi);
      const float old_len_f = static_cast<float>(old_context_len);
      const float low_f = static_cast<float>(rope.low_freq_factor);
      const float span_f = static_cast<float>(rope.high_freq_factor - rope.low_freq_factor);
      for (float& f : table.inv_freq) {
        const float wavelen = two_pi / f;
        if (wavelen > low_freq_wavelen) {  // low frequency: interpolate fully
          f = f / factor;
        } else if (!(wavelen < high_freq_wavelen)) {  // medium: blend
          const float smooth = (old_len_f / wavelen - low_f) / span_f;
          f = (1.0f - smooth) * f / factor + smooth * f;
        }  // high frequency: unchanged
      }
      break;
    }
  }
  return table;
}

void CpuBackend::rope(Tensor& x, std::span<const int32_t> positions, const RopeTable& table) {
  STRATA_CHECK(
      x.defined() && x.dtype() == DType::kF32 && x.rank() == 3,
      "rope: x must be an F32 [T, heads, head_dim] tensor, got " + shape_string(x.shape()));
  const int64_t t_count = x.dim(0), heads = x.dim(1), d = x.dim(2), half = d / 2;
  STRATA_CHECK(d == table.head_dim && static_cast<int64_t>(table.inv_freq.size()) == half,
               "rope: table is for head_dim " + std::to_string(table.head_dim) + ", x has " +
                   std::to_string(d));
  STRATA_CHECK(static_cast<int64_t>(positions.size()) == t_count,
               "rope: " + std::to_string(positions.size()) + " positions for " +
                   std::to_string(t_count) + " tokens");
  float* xs = x.data<float>();
  const float* inv_freq = table.inv_freq.data();
  parallel_for(t_count, heads * d * 8, [&](int64_t t0, int64_t t1) {
    std::vector<float> cos_sin(static_cast<size_t>(2 * half));  // per chunk: cos then sin
    float* cs = cos_sin.data();
    float* sn = cs + half;
    for (int64_t t = t0; t < t1; ++t) {
      // angle = position * inv_freq as an fp32 product (transformers' freqs), then fp32 cos/sin.
      const float pos = static_cast<float>(positions[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = pos * inv_freq[i];
        cs[i] = std::cos(angle);
        sn[i] = std::sin(angle);
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* x1 = xs + (t * heads + h) * d;
        float* x2 = x1 + half;
        // Rotate half: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin).
        for (int64_t i = 0; i < half; ++i) {
          const float a = x1[i], b = x2[i];
          x1[i] = a * cs[i] - b * sn[i];
          x2[i] = b * cs[i] + a * sn[i];
        }
      }
    }
  });
}

}  // namespace strata::compute
