// Line-oriented files for the batch CLI, plain or zstd-compressed (chosen by a ".zst" suffix).
// LineReader streams lines; RecordWriter appends whole lines, each with one write(2) (and, for
// .zst, as one complete zstd frame) so that a process killed at any moment leaves at most one
// torn record at the end; repair_records() finds the intact records and cuts the torn tail off.
// Each object is used by one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace strata::text {

bool is_zstd_path(const std::string& path);  // ends with ".zst"

class LineReader {
 public:
  // Opens `path` ("-" is standard input). Errors name the path.
  static Result<std::unique_ptr<LineReader>> open(const std::string& path);
  ~LineReader();
  // Reads the next line without its "\n" (and "\r"). Returns false at the end of the file.
  Result<bool> next(std::string& line);
  int64_t line_number() const { return line_no_; }  // of the last line returned, from 1

 private:
  LineReader() = default;
  Status fill();  // appends more decoded bytes to buf_

  std::string path_;
  int fd_ = -1;
  bool own_fd_ = false;
  bool eof_ = false;
  void* dctx_ = nullptr;  // ZSTD_DCtx when compressed
  bool frame_open_ = false;  // the decompressor is inside a frame
  std::string in_;        // compressed bytes not yet consumed
  size_t in_pos_ = 0;
  std::string buf_;       // decoded bytes not yet returned
  size_t buf_pos_ = 0;
  int64_t line_no_ = 0;
};

class RecordWriter {
 public:
  // Opens `path` for appending (creating it); compressed when `path` ends with ".zst". "-" is
  // standard output (plain, left open), each record a write(2) of its own.
  static Result<std::unique_ptr<RecordWriter>> open(const std::string& path);
  ~RecordWriter();
  // Appends `line` + "\n" as one write; the record is in the file when this returns.
  Status append(std::string_view line);
  // fsync(2): the records appended so far survive a power loss. Standard output that is a pipe
  // or a terminal has nothing to sync.
  Status sync();

 private:
  RecordWriter() = default;
  std::string path_;
  int fd_ = -1;
  bool own_fd_ = true;  // false for standard output
  void* cctx_ = nullptr;  // ZSTD_CCtx when compressed
  std::string scratch_;
};

// The records of an output file written by RecordWriter, read without changing the file.
struct RecordScan {
  std::vector<std::string> records;  // intact records, without their "\n"
  uint64_t intact_bytes = 0;         // file bytes the intact records take (a prefix of the file)
  uint64_t file_bytes = 0;           // the rest is a torn tail
  // .zst only: the bytes from intact_bytes on are not a zstd frame at all (rather than a frame
  // cut short), so the file is probably not one RecordWriter wrote.
  bool foreign_tail = false;
};
// A missing file is an empty scan. Errors name the path.
Result<RecordScan> scan_records(const std::string& path);

// Replaces `path` by a file holding `records` (as RecordWriter writes them), atomically: a new
// file is written and synced beside it, then renamed over it, so a crash leaves the old or the
// new file, never a mix.
Status rewrite_records(const std::string& path, const std::vector<std::string>& records);

// Writes `text` to `path` atomically (a temporary file beside it, fsync, rename, fsync of the
// directory).
Status write_file_atomically(const std::string& path, std::string_view text);

struct RepairResult {
  int64_t records = 0;        // intact records found
  uint64_t truncated_bytes = 0;  // torn tail removed
};

// Reads the records of an output file written by RecordWriter, calling `on_record` for each
// intact line, and truncates a torn last record (a line without its "\n", or an incomplete zstd
// frame). A missing file is an empty one.
Result<RepairResult> repair_records(const std::string& path,
                                    const std::function<void(std::string_view)>& on_record);

}  // namespace strata::text
