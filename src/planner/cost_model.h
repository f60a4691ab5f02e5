// The cost model: for a model, a workload, a machine, a batch shape and the compression and
// attention choices, the seconds each resource is busy per layer in one prefill step and in one
// decode step of a whole block, as affine functions of the placement fractions; layer time is the
// max over the bounds the zig-zag schedule overlaps. The LP minimises exactly what predictions
// evaluate. Pure functions, thread safe. Units: seconds, bytes.
//
// FlexGen's model (paper section 4.3) corrected: weight loading overlaps compute in decode too,
// compression changes the bytes moved and adds dequantisation work, GQA shrinks the KV cache,
// Llama MLPs have three matrices, a mixture-of-experts layer streams every expert but runs each
// over its share of the rows (about rows x k / E), and where attention over off-GPU KV runs is a
// choice. Where the profile has them, every call also pays its fixed cost: kernel launches per
// (layer, GPU batch), CPU attention per call, latency per copy and per disk request, with the
// calls counted as the engine issues them (engine_calls.h); a cost tied to a tier scales with
// that tier's fraction of the KV units, weights or GPU batches, so the model stays affine. A job
// of mixed lengths is a weighted sum of one model per length (JobModel).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "planner/hardware.h"
#include "planner/model_spec.h"
#include "planner/policy.h"

namespace strata::planner {

// constant + sum(coef[i] * fractions[i]).
struct Affine {
  double constant = 0;
  Fractions coef{};

  double eval(const Fractions& f) const;
  Affine& add(Frac i, double c) {
    coef[i] += c;
    return *this;
  }
  Affine& operator+=(const Affine& o);
  Affine operator*(double s) const;
};

enum Resource { kDiskRead, kDiskWrite, kH2d, kD2h, kGpuCompute, kCpuCompute, kDram, kNumResources };
const char* resource_name(int r);  // "disk_read", "disk_write", "h2d", "d2h", "gpu_compute", ...

struct Bound {
  std::string name;  // "disk", "h2d", "d2h", "pcie_duplex", "gpu_compute", "cpu_compute", "dram"
  Affine seconds;
};

struct PhaseModel {
  std::array<Affine, kNumResources> seconds;  // per layer, the whole block
  std::vector<Bound> bounds;                  // layer time = max over these
};

struct CostModel {
  PhaseModel prefill, decode;
  int64_t layers = 0;
  int64_t decode_steps = 0;  // gen_len - 1
  int64_t block = 0;         // sequences per block
  int64_t gen_len = 0;
};

// The model of blocks whose requests are workload.prompt_len + workload.gen_len tokens (the mix,
// if any, is not looked at: see JobModel).
CostModel build_cost_model(const ModelSpec& spec, const Workload& workload,
                           const HardwareProfile& hw, const BatchShape& batch,
                           const Choices& choices);

// Resource and bound times of one phase at `f`; layer_s is the largest bound.
PhaseTimes evaluate_phase(const PhaseModel& phase, const Fractions& f);
// Times of a block at `f` (bytes and job_s are left for the caller).
Prediction predict(const CostModel& model, const Fractions& f, const Workload& workload);

// With `slots` sequences at once, a prompt step for waiting requests runs once this many slots are
// free: the fraction sqrt(2 / L) of the slots (L: the requests' mean max_new_tokens), at most half,
// at least one. A slot left empty costs a token a step, a prompt step a read of the weights; this
// fraction makes the two about equal over a sequence's life. (The runtime's Generator refills so
// on a model without mixed steps; the job model counts its refills so.)
int32_t refill_threshold(double mean_new_tokens, int32_t slots);

// A job: one CostModel per length bucket with the number of blocks it runs (ceil(count / block)
// with a request count, else its share of the requests). The LP minimises
// sum(blocks x (layers x prefill layer time + layers x steps x decode layer time)), which is the
// job's time with a request count and proportional to the time per token without one.
// Continuous batching (Workload::continuous): the GPU batches hold paged_batch_size sequences, a
// bucket's blocks are count / block, its gen_len the mean, and the job adds `refills` decode steps
// of the heaviest part: each time a share of
// the slots (refill_threshold(mean gen_len, block)) has emptied, a prompt step for the joining
// requests reads the weights once more; none with attention on the GPU, where the joining
// prompts ride in decode steps. A continuous job with a request count ends no sooner than
// its longest answer: the first prompt step, then gen_len - 1 decode steps, each no cheaper than a
// step of one GPU batch (`tail`, the last steps run with few sequences left), so its time is at
// least that.
// The sequences a GPU batch of `gbs` slots holds at once in a continuous job of w's mix, whose
// KV is paged (each request's rows for its own prompt + max_new_tokens): gbs slots of the
// longest length over the mean length of the sequences running (each request weighed by its
// gen_len, the steps it runs; plus half a page), between gbs and kPagedSequencesPerSlot x gbs.
// gbs for a fixed-block job or one of a single length.
int64_t paged_batch_size(const Workload& w, int64_t gbs);

struct JobModel {
  std::vector<CostModel> parts;
  std::vector<double> blocks;
  double refills = 0;
  std::optional<CostModel> tail;  // one GPU batch at the mean prompt and the longest generation
};
JobModel build_job_model(const ModelSpec& spec, const Workload& workload, const HardwareProfile& hw,
                         const BatchShape& batch, const Choices& choices);
// The job at `f`: tokens/s and job_s over every part; prefill_s, decode_step_s and block_s are the
// means per block; the phase times and the bottleneck are those of the part taking most time.
Prediction predict(const JobModel& job, const Fractions& f, const Workload& workload);

}  // namespace strata::planner
