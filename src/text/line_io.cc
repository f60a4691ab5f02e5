#include "text/line_io.h"

#include <cerrno>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

namespace strata::text {

namespace {
constexpr size_t kReadChunk = 1 << 20;
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
  if (fd_ >= 0) ::close(fd_);
  if (cctx_) ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(cctx_));
}

Status RecordWriter::append(std::string_view line) {
  scratch_.assign(line);
  scratch_ += '\n';
  if (!cctx_) return write_all(fd_, scratch_.data(), scratch_.size(), path_);
  std::string frame(ZSTD_compressBound(scratch_.size()), '\0');
  const size_t n = ZSTD_compress2(static_cast<ZSTD_CCtx*>(cctx_), frame.data(), frame.size(), scratch_.data(),
                                  scratch_.size());
  if (ZSTD_isError(n)) return internal_error(path_ + ": zstd compression failed: " + ZSTD_getErrorName(n));
  return write_all(fd_, frame.data(), n, path_);
}

Status RecordWriter::sync() {
  if (::fsync(fd_) != 0) return errno_status("fsync failed", path_);
  return Status::ok();
}

// ---- repair ----

Result<RepairResult> repair_records(const std::string& path,
                                    const std::function<void(std::string_view)>& on_record) {
  RepairResult res;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return res;
    return errno_status("cannot stat", path);
  }
  STRATA_ASSIGN_OR_RETURN(std::string data, read_all(path));
  size_t keep = 0;  // bytes of intact records
  auto emit_lines = [&](std::string_view text) {
    size_t pos = 0;
    for (size_t nl; (nl = text.find('\n', pos)) != std::string_view::npos; pos = nl + 1) {
      on_record(text.substr(pos, nl - pos));
      ++res.records;
    }
    return pos;  // bytes consumed (complete lines)
  };
  if (!is_zstd_path(path)) {
    keep = emit_lines(data);
  } else {
    std::string out;
    size_t pos = 0;
    while (pos < data.size()) {
      const size_t fsz = ZSTD_findFrameCompressedSize(data.data() + pos, data.size() - pos);
      if (ZSTD_isError(fsz)) break;  // an incomplete last frame
      const unsigned long long csz = ZSTD_getFrameContentSize(data.data() + pos, fsz);
      if (csz == ZSTD_CONTENTSIZE_ERROR) break;
      out.resize(csz == ZSTD_CONTENTSIZE_UNKNOWN ? (1u << 20) : static_cast<size_t>(csz));
      const size_t d = ZSTD_decompress(out.data(), out.size(), data.data() + pos, fsz);
      if (ZSTD_isError(d)) break;  // a damaged frame: cut here
      if (d > 0 && out[d - 1] != '\n') break;  // a frame without its final newline is not ours: cut it
      emit_lines(std::string_view(out.data(), d));
      pos += fsz;
    }
    keep = pos;
  }
  if (keep < data.size()) {
    if (::truncate(path.c_str(), static_cast<off_t>(keep)) != 0) return errno_status("cannot truncate the torn tail", path);
    res.truncated_bytes = data.size() - keep;
  }
  return res;
}

}  // namespace strata::text
