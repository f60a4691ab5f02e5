#include "runtime/weight_store_source.h"

#include "compute/int4.h"
#include "model/config.h"
#include "model/weight_names.h"
#include "storage/weight_store.h"

namespace strata::runtime {
namespace {

class WeightStoreSource final : public model::WeightSource {
 public:
  WeightStoreSource(std::unique_ptr<storage::IoBackend> owned,
                    std::unique_ptr<storage::WeightStore> store)
      : owned_io_(std::move(owned)), store_(std::move(store)) {}

  Result<Tensor> load(const model::WeightSpec& spec) override {
    STRATA_ASSIGN_OR_RETURN(const storage::StoreTensor* t, locate(spec));
    STRATA_ASSIGN_OR_RETURN(storage::AlignedBuffer buf, store_->read(*t));
    if (t->compression == storage::Compression::kNone) {
      return Tensor::wrap(buf.data(), t->dtype, t->shape, MemoryKind::kHost, buf.share());
    }
    Result<compute::Int4View> view = compute::int4_view(buf.span(), t->shape);
    if (!view.is_ok()) {
      return view.status().with_context((store_->dir() / t->file).string() + ": tensor '" +
                                        t->name + "'");
    }
    Tensor f32 = compute::dequantise_int4(*view);
    if (t->dtype == DType::kF32) return f32;
    Tensor out = Tensor::host(t->dtype, t->shape);
    convert_from_f32(t->dtype, f32.data<float>(), out.raw(), static_cast<size_t>(f32.numel()));
    return out;
  }

  std::vector<std::string> tensor_names() const override {
    std::vector<std::string> names;
    for (const storage::StoreTensor& t : store_->manifest().tensors) names.push_back(t.name);
    return names;
  }

  Status check(const std::vector<model::WeightSpec>& specs) override {
    for (const model::WeightSpec& spec : specs) {
      Result<const storage::StoreTensor*> t = locate(spec);
      if (!t.is_ok()) return t.status();
    }
    return Status::ok();
  }

 private:
  Result<const storage::StoreTensor*> locate(const model::WeightSpec& spec) const {
    const storage::StoreTensor* t = store_->find(spec.name);
    if (t == nullptr) {
      return not_found(store_->dir().string() + ": weight store has no tensor '" + spec.name +
                       "' (convert the model again)");
    }
    if (t->shape != spec.shape) {
      return corrupt(store_->dir().string() + ": tensor '" + spec.name + "' has shape " +
                     shape_string(t->shape) + " but config.json implies " +
                     shape_string(spec.shape));
    }
    return t;
  }

  std::unique_ptr<storage::IoBackend> owned_io_;  // may be null; declared first, destroyed last
  std::unique_ptr<storage::WeightStore> store_;
};

}  // namespace

Result<std::unique_ptr<model::WeightSource>> open_weight_store_source(
    const std::filesystem::path& dir, storage::IoBackend& io, Logger& log) {
  STRATA_ASSIGN_OR_RETURN(auto store, storage::WeightStore::open(dir, io, log));
  return std::unique_ptr<model::WeightSource>(
      std::make_unique<WeightStoreSource>(nullptr, std::move(store)));
}

Result<model::ModelFiles> open_weight_store_dir(const std::filesystem::path& dir, Logger& log) {
  STRATA_ASSIGN_OR_RETURN(auto io, storage::make_io_backend({}, log));
  STRATA_ASSIGN_OR_RETURN(auto store, storage::WeightStore::open(dir, *io, log));
  model::ModelFiles files;
  STRATA_ASSIGN_OR_RETURN(files.config, model::load_config(dir / "config.json"));
  files.weights = std::make_unique<WeightStoreSource>(std::move(io), std::move(store));
  Status s = model::check_weights(files.config, *files.weights, dir.string());
  if (!s.is_ok()) {
    return s.with_context("weight store " + dir.string() + " does not match its config.json");
  }
  return files;
}

}  // namespace strata::runtime
