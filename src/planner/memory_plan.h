// Memory accounting: the exact list of buffers the zig-zag runtime allocates for a placement
// (resident weights, KV and activations per tier, two prefetch slots for streamed layers, pinned
// staging for disk traffic, KV staging, the working activations of one GPU batch, CPU attention
// buffers, host logits and the GPU workspace), and how fractions are realised as whole tensors:
// each layer's tensors, each (layer, GPU batch) KV cache and each GPU batch's activations sit
// wholly on one tier. The runtime allocates exactly MemoryPlan::buffers; the planner checks their
// sums against the budgets. Also the affine estimate of the same sums that the LP constrains.
// Pure functions, thread safe. Units: bytes.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "planner/cost_model.h"
#include "planner/model_spec.h"
#include "planner/policy.h"

namespace strata::planner {

// Bytes a GPU batch's kernels may use as scratch (cuBLAS workspace, attention tiles). Attention
// kernels tile over keys, so no [prompt, prompt] score matrix is ever allocated.
inline constexpr uint64_t kGpuWorkspaceBytes = 64ull << 20;
// Device memory a CUDA process holds before any buffer: the context, the kernels' module images
// and the cuBLAS handles (about 0.5 GiB on an H100 with CUDA 13), kept out of the GPU budget.
inline constexpr uint64_t kCudaContextBytes = 640ull << 20;

// With its KV in pages (a sequence's own length each), a GPU batch holds up to this many times
// its gbs sequences in a decode step (a prompt step still takes at most gbs prompts); the
// buffers of a decode step's queries and new keys and values are made for that many.
inline constexpr int64_t kPagedSequencesPerSlot = 4;
// The positions of a KV page for GPU batches of `gbs` slots of `max_len` positions: the longest
// up to 64 and an eighth of max_len that divides max_len (so sequences of the longest length fill
// a GPU batch's rows as slots do), or failing a divisor of a quarter of that, one that divides
// gbs * max_len (the batch's rows).
int64_t paged_kv_page_len(int64_t gbs, int64_t max_len);


struct Buffer {
  std::string name;        // "weights.prefetch_slot", "kv.resident", ...
  Tier tier = Tier::kGpu;  // disk buffers are regions of files under the offload directory
  uint64_t bytes_each = 0;
  int64_t count = 1;
  std::string what;        // shape and purpose, e.g. "[gbs*prompt, hidden] fp16 residual"
  uint64_t bytes() const { return bytes_each * static_cast<uint64_t>(count); }
};

struct MemoryPlan {
  std::vector<Buffer> buffers;
  uint64_t total(Tier t) const;
  std::array<uint64_t, kNumTiers> totals() const;
};

// Where each piece of data sits once the fractions are rounded to whole units.
struct Placement {
  Workload workload;
  BatchShape batch;
  Choices choices;
  std::vector<Tier> layer_weights;  // [layer * layer_tensors.size() + tensor]
  std::vector<Tier> other_weights;  // [other tensor]
  std::vector<Tier> kv;             // [layer * num_gpu_batches + batch]
  std::vector<Tier> activations;    // [batch]
  // The realised fractions: of the streamed weight bytes (layers and head), of the KV units, of
  // the GPU batches' activations.
  Fractions realised{};
};

// Rounds `target` to whole units, deterministically. Within each layer the tensors are laid
// along [0, 1) by their bytes and layer i's positions are rotated by i times the golden ratio, so
// every layer is split alike and the realised fractions track the targets.
Placement realise(const ModelSpec& spec, const Workload& workload, const BatchShape& batch,
                  const Choices& choices, const Fractions& target);
Placement realise(const ModelSpec& spec, const Policy& policy);

// The buffers the runtime allocates for `placement`.
MemoryPlan plan_memory(const ModelSpec& spec, const Placement& placement);

// Affine estimates (in the fractions) of each tier's total, for the LP. They equal plan_memory's
// totals when every fraction is 0 or 1 and every unit is divisible; otherwise the exact check
// after rounding decides.
std::array<Affine, kNumTiers> memory_affine(const ModelSpec& spec, const Workload& workload,
                                            const BatchShape& batch, const Choices& choices);

// Fails with kOutOfMemory naming the first tier over budget, by how much, and its largest buffers.
Status check_memory(const MemoryPlan& plan, const Budgets& budgets);

}  // namespace strata::planner
