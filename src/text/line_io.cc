#include "text/line_io.h"

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "common/crash_point.h"

namespace strata::text {

namespace {
constexpr size_t kReadChunk = 1 << 20;
// One output record: a result line with its logprobs is a few MiB at most.
constexpr unsigned long long kMaxRecordBytes = 1ull << 30;
constexpr int kZstdLevel = 3;

Status errno_status(const std::string& what, const std::string& path) {
  const int e = errno;
  return io_error(path + ": " + what + ": " + std::strerror(e), e);
}

Status write_all(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno_status("write failed", path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::ok();
}

Result<std::string> read_all(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_status("cannot open", path);
  std::string data;
  std::vector<char> chunk(kReadChunk);
  for (;;) {
    const ssize_t r = ::read(fd, chunk.data(), chunk.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      Status s = errno_status("read failed", path);
      ::close(fd);
      return s;
    }
    if (r == 0) break;
    data.append(chunk.data(), static_cast<size_t>(r));
  }
  ::close(fd);
  return data;
}
}  // namespace

bool is_zstd_path(const std::string& path) {
  return path.size() >= 4 && path.compare(path.size() - 4, 4, ".zst") == 0;
}

// ---- LineReader ----

Result<std::unique_ptr<LineReader>> LineReader::open(const std::string& path) {
  std::unique_ptr<LineReader> r(new LineReader());
  r->path_ = path;
  if (path == "-") {
    r->fd_ = 0;
  } else {
    r->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (r->fd_ < 0) return errno_status("cannot open the input", path);
    r->own_fd_ = true;
    struct stat st {};
    if (::fstat(r->fd_, &st) == 0 && S_ISDIR(st.st_mode)) return invalid_argument(path + ": is a directory, not a file");
  }
  if (is_zstd_path(path)) r->dctx_ = ZSTD_createDCtx();
  return r;
}

LineReader::~LineReader() {
  if (own_fd_ && fd_ >= 0) ::close(fd_);
  if (dctx_) ZSTD_freeDCtx(static_cast<ZSTD_DCtx*>(dctx_));
}

Status LineReader::fill() {
  std::vector<char> chunk(kReadChunk);
  for (;;) {
    if (dctx_ && in_pos_ < in_.size()) {
      ZSTD_inBuffer in{in_.data(), in_.size(), in_pos_};
      std::vector<char> out(ZSTD_DStreamOutSize());
      ZSTD_outBuffer ob{out.data(), out.size(), 0};
      const size_t rc = ZSTD_decompressStream(static_cast<ZSTD_DCtx*>(dctx_), &ob, &in);
      if (ZSTD_isError(rc)) return corrupt(path_ + ": zstd stream is corrupt: " + ZSTD_getErrorName(rc));
      in_pos_ = in.pos;
      frame_open_ = rc != 0;
      if (in_pos_ == in_.size()) {
        in_.clear();
        in_pos_ = 0;
      }
      if (ob.pos > 0) {
        buf_.append(out.data(), ob.pos);
        return Status::ok();
      }
      continue;
    }
    if (eof_) {
      if (frame_open_) return corrupt(path_ + ": the zstd stream ends inside a frame (the file is truncated)");
      return Status::ok();
    }
    const ssize_t r = ::read(fd_, chunk.data(), chunk.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno_status("read failed", path_);
    }
    if (r == 0) {
      eof_ = true;
      continue;  // reports a frame left open
    }
    if (dctx_) {
      in_.append(chunk.data(), static_cast<size_t>(r));
    } else {
      buf_.append(chunk.data(), static_cast<size_t>(r));
      return Status::ok();
    }
  }
}

Result<bool> LineReader::next(std::string& line) {
  for (;;) {
    const size_t nl = buf_.find('\n', buf_pos_);
    if (nl != std::string::npos) {
      line.assign(buf_, buf_pos_, nl - buf_pos_);
      buf_pos_ = nl + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      ++line_no_;
      return true;
    }
    if (buf_pos_ > 0) {
      buf_.erase(0, buf_pos_);
      buf_pos_ = 0;
    }
    const size_t before = buf_.size();
    STRATA_RETURN_IF_ERROR(fill());
    if (buf_.size() == before && eof_ && (in_.empty() || !dctx_)) {
      if (buf_.empty()) return false;
      line.swap(buf_);
      buf_.clear();
      if (!line.empty() && line.back() == '\r') line.pop_back();
      ++line_no_;
      return true;
    }
  }
}

// ---- RecordWriter ----

Result<std::unique_ptr<RecordWriter>> RecordWriter::open(const std::string& path) {
  std::unique_ptr<RecordWriter> w(new RecordWriter());
  w->path_ = path;
  if (path == "-") {
    w->path_ = "standard output";
    w->fd_ = STDOUT_FILENO;
    w->own_fd_ = false;
    return w;
  }
  w->fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (w->fd_ < 0) return errno_status("cannot open the output for writing", path);
  if (is_zstd_path(path)) {
    auto* c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, kZstdLevel);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    w->cctx_ = c;
  }
  return w;
}

RecordWriter::~RecordWriter() {
  if (own_fd_ && fd_ >= 0) ::close(fd_);
  if (cctx_) ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(cctx_));
}

Status RecordWriter::append(std::string_view line) {
  scratch_.assign(line);
  scratch_ += '\n';
  std::string_view bytes = scratch_;
  std::string frame;
  if (cctx_) {
    frame.resize(ZSTD_compressBound(scratch_.size()));
    const size_t n = ZSTD_compress2(static_cast<ZSTD_CCtx*>(cctx_), frame.data(), frame.size(), scratch_.data(),
                                    scratch_.size());
    if (ZSTD_isError(n)) return internal_error(path_ + ": zstd compression failed: " + ZSTD_getErrorName(n));
    bytes = std::string_view(frame.data(), n);
  }
  // Crash tests: die with half a record written, or right after a whole one.
  if (crash_point_due("torn_write")) {
    (void)write_all(fd_, bytes.data(), bytes.size() / 2, path_);
    crash_now();
  }
  STRATA_RETURN_IF_ERROR(write_all(fd_, bytes.data(), bytes.size(), path_));
  crash_point("record_written");
  return Status::ok();
}

Status RecordWriter::sync() {
  if (::fsync(fd_) != 0 && (own_fd_ || (errno != EINVAL && errno != EROFS && errno != ENOTSUP)))
    return errno_status("fsync failed", path_);
  return Status::ok();
}

// ---- scan, rewrite, repair ----

Result<RecordScan> scan_records(const std::string& path) {
  RecordScan res;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return res;
    return errno_status("cannot stat", path);
  }
  STRATA_ASSIGN_OR_RETURN(std::string data, read_all(path));
  res.file_bytes = data.size();
  auto take_lines = [&](std::string_view text) {
    size_t pos = 0;
    for (size_t nl; (nl = text.find('\n', pos)) != std::string_view::npos; pos = nl + 1)
      res.records.emplace_back(text.substr(pos, nl - pos));
    return pos;  // bytes consumed (complete lines)
  };
  if (!is_zstd_path(path)) {
    res.intact_bytes = take_lines(data);
    return res;
  }
  std::string out;
  size_t pos = 0;
  while (pos < data.size()) {
    const size_t fsz = ZSTD_findFrameCompressedSize(data.data() + pos, data.size() - pos);
    if (ZSTD_isError(fsz)) {
      // A frame cut short still starts with the zstd magic number; anything else is not ours.
      const unsigned char magic[4] = {0x28, 0xB5, 0x2F, 0xFD};
      const size_t n = std::min<size_t>(4, data.size() - pos);
      res.foreign_tail = std::memcmp(data.data() + pos, magic, n) != 0;
      break;
    }
    const unsigned long long csz = ZSTD_getFrameContentSize(data.data() + pos, fsz);
    // RecordWriter frames hold one record each and state their size; a frame that does not, or
    // claims more than a record line may hold, is not one of them.
    if (csz == ZSTD_CONTENTSIZE_ERROR || csz == ZSTD_CONTENTSIZE_UNKNOWN || csz > kMaxRecordBytes) {
      res.foreign_tail = true;
      break;
    }
    out.resize(static_cast<size_t>(csz));
    const size_t d = ZSTD_decompress(out.data(), out.size(), data.data() + pos, fsz);
    if (ZSTD_isError(d)) break;              // a damaged frame: cut here
    if (d > 0 && out[d - 1] != '\n') break;  // a frame without its final newline is not ours: cut it
    take_lines(std::string_view(out.data(), d));
    pos += fsz;
  }
  res.intact_bytes = pos;
  return res;
}

namespace {

Status fsync_dir_of(const std::string& path) {
  std::string dir = path;
  const size_t slash = dir.rfind('/');
  dir = slash == std::string::npos ? "." : slash == 0 ? "/" : dir.substr(0, slash);
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_status("cannot open the directory to sync it", dir);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return errno_status("fsync of the directory failed", dir);
  return Status::ok();
}

}  // namespace

Status write_file_atomically(const std::string& path, std::string_view text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno_status("cannot create", tmp);
  Status s = write_all(fd, text.data(), text.size(), tmp);
  if (s.is_ok() && ::fsync(fd) != 0) s = errno_status("fsync failed", tmp);
  ::close(fd);
  if (s.is_ok()) crash_point("atomic_write");
  if (s.is_ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = errno_status("cannot rename over", path);
  if (!s.is_ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  return fsync_dir_of(path);
}

Status rewrite_records(const std::string& path, const std::vector<std::string>& records) {
  const std::string tmp = path + ".rewrite." + std::to_string(::getpid()) + (is_zstd_path(path) ? ".zst" : "");
  ::unlink(tmp.c_str());
  Status s = Status::ok();
  {
    Result<std::unique_ptr<RecordWriter>> w = RecordWriter::open(tmp);
    if (!w.is_ok()) return w.status();
    for (const std::string& r : records) {
      s = (*w)->append(r);
      if (!s.is_ok()) break;
    }
    if (s.is_ok()) s = (*w)->sync();
  }
  if (s.is_ok()) crash_point("rewrite");
  if (s.is_ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = errno_status("cannot rename over", path);
  if (!s.is_ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  return fsync_dir_of(path);
}

Result<RepairResult> repair_records(const std::string& path,
                                    const std::function<void(std::string_view)>& on_record) {
  STRATA_ASSIGN_OR_RETURN(RecordScan scan, scan_records(path));
  RepairResult res;
  for (const std::string& r : scan.records) on_record(r);
  res.records = static_cast<int64_t>(scan.records.size());
  if (scan.intact_bytes < scan.file_bytes) {
    if (::truncate(path.c_str(), static_cast<off_t>(scan.intact_bytes)) != 0)
      return errno_status("cannot truncate the torn tail", path);
    res.truncated_bytes = scan.file_bytes - scan.intact_bytes;
  }
  return res;
}

}  // namespace strata::text
