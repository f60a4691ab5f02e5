#include "storage/store_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "storage/checksum.h"

namespace strata::storage {
namespace {

Status sync_path(const std::filesystem::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error(p.string() + ": open for fsync: " + std::strerror(errno), errno);
  int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return io_error(p.string() + ": fsync: " + std::strerror(err), err);
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<StoreWriter>> StoreWriter::create(IoBackend& io,
                                                         const std::filesystem::path& out,
                                                         Logger& log) {
  std::error_code ec;
  std::filesystem::path target = std::filesystem::absolute(out, ec);
  if (ec) return invalid_argument(out.string() + ": " + ec.message());
  if (!target.has_filename()) target = target.parent_path();
  if (std::filesystem::exists(target, ec) &&
      !(std::filesystem::is_directory(target, ec) && std::filesystem::is_empty(target, ec))) {
    return invalid_argument(target.string() +
                            " already exists: remove it or choose another output directory");
  }
  std::filesystem::path partial =
      target.parent_path() / (target.filename().string() + ".partial-" + std::to_string(::getpid()));
  std::filesystem::remove_all(partial, ec);
  if (!std::filesystem::create_directories(partial, ec) || ec) {
    return io_error(partial.string() + ": cannot create: " + ec.message(), ec.value());
  }
  return std::unique_ptr<StoreWriter>(new StoreWriter(io, target, partial, log));
}

StoreWriter::~StoreWriter() {
  file_.reset();
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove_all(partial_, ec);
  }
}

Status StoreWriter::finish_file() {
  if (!file_) return Status::ok();
  STRATA_RETURN_IF_ERROR(file_->sync());
  manifest_.files.push_back(StoreFile{file_name_, file_end_});
  file_.reset();
  return Status::ok();
}

Status StoreWriter::add(const StoreTensor& meta, std::span<const std::byte> payload) {
  STRATA_CHECK(!committed_, "StoreWriter::add after commit");
  if (payload.size() != meta.bytes) {
    return internal_error("store writer: tensor '" + meta.name + "' has " +
                          std::to_string(payload.size()) + " bytes, its entry says " +
                          std::to_string(meta.bytes));
  }
  if (!file_ || meta.file != file_name_) {
    for (const StoreFile& f : manifest_.files) {
      if (f.name == meta.file) {
        return internal_error("store writer: file '" + meta.file + "' was already finished");
      }
    }
    STRATA_RETURN_IF_ERROR(finish_file());
    STRATA_ASSIGN_OR_RETURN(file_, IoFile::open(io_, partial_ / meta.file, FileAccess::kCreate,
                                                /*direct=*/true, log_));
    file_name_ = meta.file;
    file_end_ = 0;
  }
  const uint64_t padded = align_up(std::max<uint64_t>(payload.size(), 1), kStoreAlignment);
  if (staging_.capacity() < padded) {
    STRATA_ASSIGN_OR_RETURN(staging_, AlignedBuffer::allocate(padded));
  }
  std::memcpy(staging_.data(), payload.data(), payload.size());
  std::memset(staging_.data() + payload.size(), 0, padded - payload.size());
  StoreTensor entry = meta;
  entry.offset = file_end_;
  entry.xxhash64 = xxhash64(payload);
  IoRequest req{IoOpKind::kWrite, file_.get(), entry.offset, staging_.data(), padded, -1,
                "tensor '" + meta.name + "'"};
  STRATA_RETURN_IF_ERROR(run_io(io_, std::span<const IoRequest>(&req, 1)));
  file_end_ += padded;
  manifest_.tensors.push_back(std::move(entry));
  return Status::ok();
}

Status StoreWriter::copy_file(const std::filesystem::path& src, const std::string& name) {
  std::error_code ec;
  std::filesystem::copy_file(src, partial_ / name, std::filesystem::copy_options::overwrite_existing,
                             ec);
  if (ec) return io_error("copying " + src.string() + " into the store: " + ec.message(), ec.value());
  return sync_path(partial_ / name);
}

Status StoreWriter::commit(StoreManifest info) {
  STRATA_CHECK(!committed_, "StoreWriter::commit twice");
  STRATA_RETURN_IF_ERROR(finish_file());
  manifest_.compression = std::move(info.compression);
  manifest_.source = std::move(info.source);
  manifest_.format_version = kStoreFormatVersion;
  const std::filesystem::path manifest_path = partial_ / std::string(kStoreManifestName);
  {
    std::ofstream out(manifest_path, std::ios::binary | std::ios::trunc);
    out << manifest_to_json(manifest_);
    out.flush();
    if (!out) return io_error(manifest_path.string() + ": cannot write the manifest", errno);
  }
  STRATA_RETURN_IF_ERROR(sync_path(manifest_path));
  STRATA_RETURN_IF_ERROR(sync_path(partial_));
  if (::rename(partial_.c_str(), out_.c_str()) != 0) {
    const int err = errno;
    return io_error("renaming " + partial_.string() + " to " + out_.string() + ": " +
                        std::strerror(err) +
                        (err == ENOTEMPTY || err == EEXIST
                             ? " (the output directory appeared meanwhile: remove it)"
                             : ""),
                    err);
  }
  committed_ = true;
  return sync_path(out_.parent_path());
}

}  // namespace strata::storage
