// The WeightSource over a Hugging Face safetensors checkpoint: one model.safetensors, or the shards
// named by model.safetensors.index.json. Every header is validated when the source opens. With an
// index, weight_map is authoritative: tensors a shard holds but the map does not list are ignored.
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/json_read.h"
#include "model/safetensors.h"
#include "model/weight_source.h"

namespace strata::model {
namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

class SafetensorsSource final : public WeightSource {
 public:
  explicit SafetensorsSource(std::filesystem::path dir) : dir_(std::move(dir)) {}

  // Registers every tensor of `file` (used for a single-file checkpoint).
  void add_all(std::unique_ptr<SafetensorsFile> file) {
    for (const SafetensorsEntry& e : file->entries()) tensors_[e.name] = {file.get(), &e};
    files_.push_back(std::move(file));
  }
  SafetensorsFile* add_file(std::unique_ptr<SafetensorsFile> file) {
    files_.push_back(std::move(file));
    return files_.back().get();
  }
  void add_tensor(const std::string& name, SafetensorsFile* file, const SafetensorsEntry* e) {
    tensors_[name] = {file, e};
  }

  Result<Tensor> load(const WeightSpec& spec) override {
    STRATA_ASSIGN_OR_RETURN(Located loc, locate(spec));
    if (!loc.slice) return loc.file->read(*loc.entry);
    const StoredSlice& s = *loc.slice;
    const uint64_t cols = static_cast<uint64_t>(s.stored_shape[2]);
    const uint64_t row = static_cast<uint64_t>(s.index * s.stored_shape[1] + s.row_begin);
    return loc.file->read_part(*loc.entry, row * cols, spec.shape);
  }

  std::vector<std::string> tensor_names() const override {
    std::vector<std::string> names;
    names.reserve(tensors_.size());
    for (const auto& [name, loc] : tensors_) names.push_back(name);
    return names;
  }

  Status check(const std::vector<WeightSpec>& specs) override {
    for (const WeightSpec& spec : specs) {
      Result<Located> loc = locate(spec);
      if (!loc.is_ok()) return loc.status();
    }
    return Status::ok();
  }

 private:
  struct Located {
    SafetensorsFile* file = nullptr;
    const SafetensorsEntry* entry = nullptr;
    const StoredSlice* slice = nullptr;  // set when the weight is part of a fused tensor
  };

  // Checks a stored tensor's dtype and its shape against `want`.
  static Status check_entry(const Located& loc, const std::string& hf, const WeightSpec& spec,
                            const Shape& want) {
    const std::string where = loc.file->path().string() + ": tensor '" + hf + "' (" + spec.name + ")";
    const SafetensorsEntry& e = *loc.entry;
    if (!e.dtype || (*e.dtype != DType::kF32 && *e.dtype != DType::kF16 && *e.dtype != DType::kBF16)) {
      return unsupported(where + " has dtype " + e.dtype_name + "; weights must be F32, F16 or BF16");
    }
    if (e.shape != want) {
      return corrupt(where + " has shape " + shape_string(e.shape) + " but config.json implies " +
                     shape_string(want));
    }
    return Status::ok();
  }

  // Finds the first of spec.hf_names present, else the first of spec.slices, and checks its dtype
  // and shape.
  Result<Located> locate(const WeightSpec& spec) const {
    for (const std::string& hf : spec.hf_names) {
      auto it = tensors_.find(hf);
      if (it == tensors_.end()) continue;
      STRATA_RETURN_IF_ERROR(check_entry(it->second, hf, spec, spec.shape));
      return it->second;
    }
    for (const StoredSlice& s : spec.slices) {
      auto it = tensors_.find(s.hf_name);
      if (it == tensors_.end()) continue;
      STRATA_RETURN_IF_ERROR(check_entry(it->second, s.hf_name, spec, s.stored_shape));
      Located loc = it->second;
      loc.slice = &s;
      return loc;
    }
    std::vector<std::string> names = spec.hf_names;
    for (const StoredSlice& s : spec.slices) names.push_back(s.hf_name);
    return not_found(dir_.string() + ": weight '" + spec.name + "' not found (looked for " +
                     join(names) + ")");
  }

  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, Located> tensors_;
};

// A shard name must stay inside the model directory.
bool safe_relative(const std::string& name) {
  std::filesystem::path p(name);
  if (name.empty() || p.is_absolute()) return false;
  for (const auto& part : p) {
    if (part == "..") return false;
  }
  return true;
}

Result<std::unique_ptr<WeightSource>> open_index(const std::filesystem::path& dir,
                                                 const std::filesystem::path& index_path) {
  const std::string ip = index_path.string();
  STRATA_ASSIGN_OR_RETURN(std::string text, read_regular_file(index_path, kMaxSafetensorsIndexBytes));
  STRATA_ASSIGN_OR_RETURN(SafetensorsIndex index, parse_safetensors_index(text, ip));
  auto source = std::make_unique<SafetensorsSource>(dir);
  std::unordered_map<std::string, SafetensorsFile*> shards;
  for (const auto& [tensor, shard] : index.weight_map) {
    auto found = shards.find(shard);
    if (found == shards.end()) {
      Result<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::open(dir / shard);
      if (!f.is_ok()) {
        if (f.status().code() == StatusCode::kNotFound) {
          return not_found(ip + ": shard '" + shard + "' (listed for tensor '" + tensor + "') does not exist in " +
                           dir.string());
        }
        return f.status();
      }
      found = shards.emplace(shard, source->add_file(std::move(f).value())).first;
    }
    const SafetensorsEntry* e = found->second->find(tensor);
    if (!e) {
      return corrupt(ip + ": maps tensor '" + tensor + "' to shard '" + shard +
                     "', but that shard has no such tensor");
    }
    source->add_tensor(tensor, found->second, e);
  }
  return std::unique_ptr<WeightSource>(std::move(source));
}

}  // namespace

Result<SafetensorsIndex> parse_safetensors_index(std::string_view text, const std::string& ip) {
  STRATA_ASSIGN_OR_RETURN(nlohmann::json j,
                          parse_json(text, ip, JsonLimits{.max_bytes = kMaxSafetensorsIndexBytes, .max_depth = 16}));
  if (!j.is_object()) return corrupt(ip + ": expected a JSON object");
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) {
    return corrupt(ip + ": missing 'weight_map' object ({tensor name: shard file})");
  }
  SafetensorsIndex index;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string()) {
      return corrupt(ip + ": weight_map entry for '" + it.key() + "' must be a shard file name");
    }
    const std::string shard = it.value().get<std::string>();
    if (!safe_relative(shard)) {
      return corrupt(ip + ": shard name '" + shard + "' for '" + it.key() +
                     "' must be a file name inside the model directory");
    }
    index.weight_map.emplace_back(it.key(), shard);
  }
  return index;
}

Result<std::unique_ptr<WeightSource>> open_safetensors_source(const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(dir, ec) && dir.extension() == ".safetensors") {
    STRATA_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(dir));
    auto source = std::make_unique<SafetensorsSource>(dir);
    source->add_all(std::move(file));
    return std::unique_ptr<WeightSource>(std::move(source));
  }
  if (!std::filesystem::is_directory(dir, ec)) {
    return not_found(dir.string() + ": model directory does not exist");
  }
  if (std::filesystem::exists(dir / kIndexFile, ec)) return open_index(dir, dir / kIndexFile);
  if (std::filesystem::exists(dir / kSingleFile, ec)) {
    STRATA_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(dir / kSingleFile));
    auto source = std::make_unique<SafetensorsSource>(dir);
    source->add_all(std::move(file));
    return std::unique_ptr<WeightSource>(std::move(source));
  }
  return not_found(dir.string() + ": no " + kSingleFile + " or " + kIndexFile +
                   " (strata reads safetensors checkpoints; convert .bin weights first)");
}

}  // namespace strata::model
