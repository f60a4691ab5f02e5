// Conversion of a Hugging Face model directory into a strata weight store (storage/
// store_format.h), tensor by tensor: only one tensor (and its stored form) is in memory at a
// time, and the store appears at its path only when complete (storage::StoreWriter).
// With int4-g64, the layers' linear weights are quantised (compute/int4.h); embeddings, the head,
// norms and biases are stored as they are. Not thread safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "common/log.h"
#include "common/status.h"
#include "model/weight_names.h"
#include "model/weight_source.h"
#include "storage/io_backend.h"

namespace strata::runtime {

struct ConvertOptions {
  std::string compress = "none";  // "none" or "int4-g64"
};

struct ConvertReport {
  int tensors = 0;
  int compressed = 0;         // tensors stored as int4-g64
  uint64_t source_bytes = 0;  // bytes of the tensors as loaded
  uint64_t stored_bytes = 0;  // bytes of their stored forms (before 4 KiB padding)
  double seconds = 0;
};

// True for the weights int4-g64 compresses: layers.{i}.{q,k,v,o,fc1,fc2,gate,up,down}.weight
// whose input dimension is a multiple of 64.
bool int4_applies(const model::WeightSpec& spec);

Result<ConvertReport> convert_model(const std::filesystem::path& hf_dir,
                                    const std::filesystem::path& out_dir,
                                    const ConvertOptions& options, storage::IoBackend& io,
                                    Logger& log);

// A source that returns dequantise_int4(quantise_int4(w)) for every weight int4_applies() to and
// the inner source's tensors otherwise: what a converted int4-g64 store yields, without a store.
std::unique_ptr<model::WeightSource> make_int4_roundtrip_source(
    std::unique_ptr<model::WeightSource> inner);

}  // namespace strata::runtime
