#include "runtime/convert.h"

#include <chrono>
#include <cstring>
#include <vector>

#include "compute/int4.h"
#include "model/model_dir.h"
#include "storage/store_format.h"
#include "storage/store_writer.h"

namespace strata::runtime {
namespace {

constexpr const char* kSideFiles[] = {"config.json", "generation_config.json", "tokenizer.json",
                                      "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"};

// Quantises `w` and returns its blob.
Result<std::vector<std::byte>> quantise(const Tensor& w, const std::string& name) {
  std::vector<std::byte> blob(compute::int4_blob_bytes(w.dim(0), w.dim(1)));
  Status s = compute::quantise_int4(w, blob);
  if (!s.is_ok()) return s.with_context("tensor '" + name + "'");
  return blob;
}

Tensor dequantised_as(const Tensor& w, const std::vector<std::byte>& blob) {
  Result<compute::Int4View> view = compute::int4_view(blob, w.shape());
  STRATA_CHECK(view.is_ok(), view.status().to_string());
  Tensor f32 = compute::dequantise_int4(*view);
  if (w.dtype() == DType::kF32) return f32;
  Tensor out = Tensor::host(w.dtype(), w.shape());
  convert_from_f32(w.dtype(), f32.data<float>(), out.raw(), static_cast<size_t>(f32.numel()));
  return out;
}

class Int4RoundTripSource final : public model::WeightSource {
 public:
  explicit Int4RoundTripSource(std::unique_ptr<model::WeightSource> inner)
      : inner_(std::move(inner)) {}
  Result<Tensor> load(const model::WeightSpec& spec) override {
    STRATA_ASSIGN_OR_RETURN(Tensor w, inner_->load(spec));
    if (!int4_applies(spec)) return w;
    STRATA_ASSIGN_OR_RETURN(std::vector<std::byte> blob, quantise(w, spec.name));
    return dequantised_as(w, blob);
  }
  Status check(const std::vector<model::WeightSpec>& specs) override {
    return inner_->check(specs);
  }

 private:
  std::unique_ptr<model::WeightSource> inner_;
};

}  // namespace

bool int4_applies(const model::WeightSpec& spec) {
  static constexpr const char* kLinear[] = {".q.weight",   ".k.weight",  ".v.weight",
                                            ".o.weight",   ".fc1.weight", ".fc2.weight",
                                            ".gate.weight", ".up.weight", ".down.weight"};
  if (!spec.name.starts_with("layers.") || !compute::int4_eligible(spec.shape)) return false;
  for (const char* suffix : kLinear) {
    if (spec.name.ends_with(suffix)) return true;
  }
  return false;
}

Result<ConvertReport> convert_model(const std::filesystem::path& hf_dir,
                                    const std::filesystem::path& out_dir,
                                    const ConvertOptions& options, storage::IoBackend& io,
                                    Logger& log) {
  const auto t0 = std::chrono::steady_clock::now();
  if (options.compress != "none" && options.compress != "int4-g64") {
    return invalid_argument("--compress must be none or int4-g64, not '" + options.compress + "'");
  }
  const bool int4 = options.compress == "int4-g64";
  STRATA_ASSIGN_OR_RETURN(model::ModelFiles files, model::open_model_dir(hf_dir));
  STRATA_ASSIGN_OR_RETURN(auto writer, storage::StoreWriter::create(io, out_dir, log));
  ConvertReport report;
  const std::vector<model::WeightSpec> specs = model::model_weights(files.config);
  for (const model::WeightSpec& spec : specs) {
    // One tensor in memory at a time: load, (quantise), write, drop.
    STRATA_ASSIGN_OR_RETURN(Tensor w, files.weights->load(spec));
    storage::StoreTensor meta;
    meta.name = spec.name;
    meta.file = storage::store_file_for(spec.name);
    meta.dtype = w.dtype();
    meta.shape = w.shape();
    report.source_bytes += w.bytes();
    ++report.tensors;
    if (int4 && int4_applies(spec)) {
      STRATA_ASSIGN_OR_RETURN(std::vector<std::byte> blob, quantise(w, spec.name));
      meta.compression = storage::Compression::kInt4G64;
      meta.bytes = blob.size();
      STRATA_RETURN_IF_ERROR(writer->add(meta, blob));
      report.stored_bytes += blob.size();
      ++report.compressed;
    } else {
      meta.compression = storage::Compression::kNone;
      meta.bytes = w.bytes();
      STRATA_RETURN_IF_ERROR(
          writer->add(meta, std::span<const std::byte>(static_cast<const std::byte*>(w.raw()),
                                                       w.bytes())));
      report.stored_bytes += w.bytes();
    }
    log.debug("convert: " + spec.name + " -> " + meta.file + " (" +
              std::string(storage::compression_name(meta.compression)) + ")");
  }
  std::error_code ec;
  for (const char* name : kSideFiles) {
    if (std::filesystem::exists(hf_dir / name, ec)) {
      STRATA_RETURN_IF_ERROR(writer->copy_file(hf_dir / name, name));
    }
  }
  storage::StoreManifest info;
  info.compression = options.compress;
  info.source = std::filesystem::absolute(hf_dir, ec).string();
  STRATA_RETURN_IF_ERROR(writer->commit(std::move(info)));
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

std::unique_ptr<model::WeightSource> make_int4_roundtrip_source(
    std::unique_ptr<model::WeightSource> inner) {
  return std::make_unique<Int4RoundTripSource>(std::move(inner));
}

}  // namespace strata::runtime
