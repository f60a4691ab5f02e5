// Opening a strata weight store as a model: its config.json and a model::WeightSource over its
// data files. Tensors stored as-is come back byte for byte; int4-g64 tensors are dequantised by
// the reference dequantiser (compute/int4.h) and returned in the dtype they were converted from.
// Every tensor is checksum-verified when it is read. The source is not thread safe.
#pragma once

#include <filesystem>
#include <memory>

#include "common/log.h"
#include "common/status.h"
#include "model/model_dir.h"
#include "model/weight_source.h"
#include "storage/io_backend.h"

namespace strata::runtime {

// A source that reads through `io` (borrowed; it must outlive the source).
Result<std::unique_ptr<model::WeightSource>> open_weight_store_source(
    const std::filesystem::path& dir, storage::IoBackend& io, Logger& log);

// config.json plus a source that owns its own I/O backend (io_uring, else threads), checked
// against the config like model::open_model_dir.
Result<model::ModelFiles> open_weight_store_dir(const std::filesystem::path& dir, Logger& log);

}  // namespace strata::runtime
