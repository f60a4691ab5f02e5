#include "model/safetensors.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/json_read.h"

namespace strata::model {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

std::string range_string(uint64_t b, uint64_t e) {
  std::string out = "[";  // built by appends: GCC 12 warns falsely on "[" + std::string
  out += std::to_string(b);
  out += ", ";
  out += std::to_string(e);
  out += ")";
  return out;
}

// Reads exactly n bytes at `offset`, retrying short reads and EINTR. Returns the number of bytes
// read (less than n only at end of file) or -1 with errno set.
int64_t pread_full(int fd, void* dst, uint64_t n, uint64_t offset) {
  auto* p = static_cast<char*>(dst);
  uint64_t done = 0;
  while (done < n) {
    // Linux caps one read at about 2 GiB; ask for at most 1 GiB at a time.
    size_t want = static_cast<size_t>(std::min<uint64_t>(n - done, uint64_t{1} << 30));
    ssize_t r = ::pread(fd, p + done, want, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    done += static_cast<uint64_t>(r);
  }
  return static_cast<int64_t>(done);
}

bool as_u64(const nlohmann::json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

// One tensor entry of a header: dtype, shape and data_offsets, checked against each other and
// against the data section's size.
Result<SafetensorsEntry> parse_entry(const std::string& name, const nlohmann::json& v, uint64_t data_size,
                                     const std::string& p) {
  const std::string where = p + ": tensor '" + name + "'";
  if (!v.is_object()) return corrupt(where + ": header entry must be an object");
  SafetensorsEntry e;
  e.name = name;
  auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) return corrupt(where + ": missing or non-string 'dtype'");
  e.dtype_name = dt->get<std::string>();
  std::optional<size_t> elem = safetensors_dtype_size(e.dtype_name);
  if (!elem) {
    return unsupported(where + ": unknown dtype '" + e.dtype_name +
                       "' (known: F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL ...)");
  }
  if (auto d = dtype_from_name(e.dtype_name)) e.dtype = d;

  auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) return corrupt(where + ": missing or non-array 'shape'");
  // numel must stay far from overflow; 2^62 elements is beyond any real tensor.
  uint64_t numel = 1;
  for (const auto& d : *sh) {
    uint64_t dim = 0;
    if (!as_u64(d, dim) || dim > (uint64_t{1} << 62))
      return corrupt(where + ": shape " + sh->dump() + " must hold non-negative integers");
    if (dim != 0 && numel > (uint64_t{1} << 62) / dim) return corrupt(where + ": shape " + sh->dump() + " is too large");
    numel *= dim;
    e.shape.push_back(static_cast<int64_t>(dim));
  }

  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2 || !as_u64((*off)[0], e.begin) ||
      !as_u64((*off)[1], e.end) || e.begin > e.end) {
    return corrupt(where + ": 'data_offsets' must be [begin, end] with 0 <= begin <= end");
  }
  // numel <= 2^62 and elem <= 8: the product fits in uint64.
  const uint64_t want = numel * *elem;
  if (want != e.bytes()) {
    return corrupt(where + ": shape " + shape_string(e.shape) + " of " + e.dtype_name + " needs " +
                   std::to_string(want) + " bytes but data_offsets " + range_string(e.begin, e.end) + " hold " +
                   std::to_string(e.bytes()));
  }
  if (e.end > data_size) {
    return corrupt(where + ": data range " + range_string(e.begin, e.end) + " lies outside the data section (" +
                   std::to_string(data_size) + " bytes); the file is truncated or corrupt");
  }
  return e;
}

}  // namespace

std::optional<size_t> safetensors_dtype_size(std::string_view d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2" || d == "F8_E8M0") {
    return 1;
  }
  return std::nullopt;
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

Result<SafetensorsHeader> parse_safetensors_header(std::string_view text, uint64_t data_size,
                                                   const std::string& p) {
  STRATA_ASSIGN_OR_RETURN(nlohmann::json j,
                          parse_json(text, p + ": header", JsonLimits{.max_bytes = kMaxSafetensorsHeaderBytes,
                                                                      .max_depth = 8}));
  if (!j.is_object()) return corrupt(p + ": header must be a JSON object, got " + j.type_name());
  SafetensorsHeader h;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return corrupt(p + ": __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          return corrupt(p + ": __metadata__ value for '" + m.key() + "' must be a string");
        }
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    STRATA_ASSIGN_OR_RETURN(SafetensorsEntry e, parse_entry(name, v, data_size, p));
    h.entries.push_back(std::move(e));
  }
  std::sort(h.entries.begin(), h.entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const SafetensorsEntry* last = nullptr;  // the non-empty entry reaching furthest so far
  for (const SafetensorsEntry& e : h.entries) {
    if (e.bytes() == 0) continue;
    if (last && e.begin < last->end) {
      return corrupt(p + ": tensors '" + last->name + "' " + range_string(last->begin, last->end) +
                     " and '" + e.name + "' " + range_string(e.begin, e.end) + " overlap");
    }
    if (!last || e.end > last->end) last = &e;
  }
  return h;
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string p = path.string();
  // Only a regular file: a FIFO or a device would block or never end.
  STRATA_ASSIGN_OR_RETURN(int fd, open_regular_file(path));
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->fd_ = fd;
  f->path_ = path;

  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    return io_error(p + ": cannot stat: " + std::strerror(err), err);
  }
  f->file_size_ = static_cast<uint64_t>(st.st_size);
  if (f->file_size_ < 8) {
    return corrupt(p + ": file is " + std::to_string(f->file_size_) +
                   " bytes, too short for a safetensors header (8-byte length, then JSON)");
  }

  unsigned char len_bytes[8];
  if (pread_full(fd, len_bytes, 8, 0) != 8) {
    int err = errno;
    return io_error(p + ": cannot read the header length: " + std::strerror(err), err);
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > kMaxSafetensorsHeaderBytes) {
    return corrupt(p + ": header length " + std::to_string(n) + " exceeds the limit of " +
                   std::to_string(kMaxSafetensorsHeaderBytes) +
                   " bytes (is this a safetensors file?)");
  }
  if (8 + n > f->file_size_) {
    return corrupt(p + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                   std::to_string(f->file_size_) +
                   " bytes); the file is truncated or not safetensors");
  }
  f->data_offset_ = 8 + n;
  std::string header(n, '\0');
  if (pread_full(fd, header.data(), n, 8) != static_cast<int64_t>(n)) {
    int err = errno;
    return io_error(
        p + ": cannot read the " + std::to_string(n) + "-byte header: " + std::strerror(err), err);
  }
  STRATA_ASSIGN_OR_RETURN(SafetensorsHeader h,
                          parse_safetensors_header(header, f->file_size_ - f->data_offset_, p));
  f->entries_ = std::move(h.entries);
  f->metadata_ = std::move(h.metadata);
  for (size_t i = 0; i < f->entries_.size(); ++i) f->by_name_.emplace(f->entries_[i].name, i);
  return f;
}

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

Result<Tensor> SafetensorsFile::read(const SafetensorsEntry& e) const {
  return read_part(e, 0, e.shape);
}

Result<Tensor> SafetensorsFile::read_part(const SafetensorsEntry& e, uint64_t element_offset,
                                          Shape shape) const {
  const std::string where = path_.string() + ": tensor '" + e.name + "'";
  if (!e.dtype) {
    return unsupported(where + " has dtype " + e.dtype_name +
                       ", which strata cannot load (supported: F32, F16, BF16, I32)");
  }
  Tensor t = Tensor::host(*e.dtype, std::move(shape));
  const uint64_t offset = element_offset * dtype_size(*e.dtype);
  STRATA_CHECK(offset <= e.bytes() && t.bytes() <= e.bytes() - offset, where);
  int64_t got = pread_full(fd_, t.raw(), t.bytes(), data_offset_ + e.begin + offset);
  if (got < 0) {
    int err = errno;
    return io_error(where + ": read failed: " + std::strerror(err), err);
  }
  if (static_cast<uint64_t>(got) != t.bytes()) {
    return corrupt(where + ": the file ended after " + std::to_string(got) + " of " +
                   std::to_string(t.bytes()) + " bytes (was it truncated after opening?)");
  }
  return t;
}

Result<Tensor> SafetensorsFile::read(std::string_view name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) return not_found(path_.string() + ": no tensor named '" + std::string(name) + "'");
  return read(*e);
}

}  // namespace strata::model
