#include "storage/weight_store.h"

#include <unistd.h>

#include "common/json_read.h"
#include "storage/checksum.h"

namespace strata::storage {

bool is_weight_store(const std::filesystem::path& dir) {
  std::error_code ec;
  return std::filesystem::is_regular_file(dir / std::string(kStoreManifestName), ec);
}

Result<std::unique_ptr<WeightStore>> WeightStore::open(const std::filesystem::path& dir,
                                                       IoBackend& io, Logger& log) {
  const std::filesystem::path mpath = dir / std::string(kStoreManifestName);
  Result<std::string> text = read_regular_file(mpath, kMaxManifestBytes);
  if (!text.is_ok()) {
    if (text.status().code() != StatusCode::kNotFound) return text.status();
    return not_found(dir.string() + ": no " + std::string(kStoreManifestName) +
                     " (not a weight store, or its conversion did not finish: run strata convert)");
  }
  std::unique_ptr<WeightStore> store(new WeightStore(dir, io, log));
  STRATA_ASSIGN_OR_RETURN(store->manifest_, parse_manifest(*text, mpath.string()));
  for (size_t i = 0; i < store->manifest_.tensors.size(); ++i) {
    store->by_name_[store->manifest_.tensors[i].name] = i;
  }
  for (const StoreFile& f : store->manifest_.files) {
    // Only regular files: opening a FIFO would wait for a writer forever.
    STRATA_ASSIGN_OR_RETURN(int probe, open_regular_file(dir / f.name));
    ::close(probe);
    STRATA_ASSIGN_OR_RETURN(auto file, IoFile::open(io, dir / f.name, FileAccess::kRead,
                                                    /*direct=*/true, log));
    STRATA_ASSIGN_OR_RETURN(uint64_t size, file->size());
    if (size < f.bytes) {
      return corrupt(file->path().string() + ": " + std::to_string(size) +
                     " bytes, but the manifest says " + std::to_string(f.bytes) +
                     " (the store is truncated: convert the model again)");
    }
    store->files_[f.name] = std::move(file);
  }
  return store;
}

const StoreTensor* WeightStore::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &manifest_.tensors[it->second];
}

Status verify_tensor_bytes(const std::filesystem::path& dir, const StoreTensor& t,
                           std::span<const std::byte> bytes) {
  const uint64_t got = xxhash64(bytes);
  if (got == t.xxhash64) return Status::ok();
  return corrupt((dir / t.file).string() + ": tensor '" + t.name + "' at offset " +
                 std::to_string(t.offset) + " (" + std::to_string(t.bytes) +
                 " bytes) fails its checksum: xxhash64 " + checksum_hex(got) +
                 ", manifest says " + checksum_hex(t.xxhash64) +
                 " (the file is damaged: convert the model again, and check the drive)");
}

Result<std::vector<AlignedBuffer>> WeightStore::read(std::span<const StoreTensor* const> tensors) {
  std::vector<AlignedBuffer> out;
  std::vector<IoRequest> reqs;
  out.reserve(tensors.size());
  reqs.reserve(tensors.size());
  for (const StoreTensor* t : tensors) {
    STRATA_ASSIGN_OR_RETURN(AlignedBuffer buf, AlignedBuffer::allocate(t->bytes));
    auto f = files_.find(t->file);
    STRATA_CHECK(f != files_.end(), "weight store: file of a validated tensor is not open");
    // Whole 4 KiB blocks: the writer padded every tensor to one.
    reqs.push_back(IoRequest{IoOpKind::kRead, f->second.get(), t->offset, buf.data(),
                             buf.capacity(), -1, "tensor '" + t->name + "'"});
    out.push_back(std::move(buf));
  }
  STRATA_RETURN_IF_ERROR(run_io(io_, reqs, &stats_));
  for (size_t i = 0; i < tensors.size(); ++i) {
    STRATA_RETURN_IF_ERROR(verify_tensor_bytes(dir_, *tensors[i], out[i].span()));
  }
  return out;
}

Result<AlignedBuffer> WeightStore::read(const StoreTensor& tensor) {
  const StoreTensor* one = &tensor;
  STRATA_ASSIGN_OR_RETURN(std::vector<AlignedBuffer> bufs,
                          read(std::span<const StoreTensor* const>(&one, 1)));
  return std::move(bufs.front());
}

}  // namespace strata::storage
