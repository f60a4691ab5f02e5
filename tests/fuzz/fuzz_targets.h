// The parsers' fuzz targets: one entry function per input format, each taking arbitrary bytes and
// returning 0. A broken invariant (a round trip that fails, an accepted value out of range)
// aborts, which the fuzzer reports as a crash. Built into libFuzzer executables with clang
// (STRATA_FUZZ=ON, `make fuzz`) and into a replay test of the corpora and the crash reproducers
// that every compiler builds (fuzz_replay_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace strata::fuzz {

using Entry = int (*)(const uint8_t* data, size_t size);

int request_line(const uint8_t* data, size_t size);       // a JSONL request line, and result lines
int safetensors_file(const uint8_t* data, size_t size);   // a whole .safetensors file
int safetensors_index(const uint8_t* data, size_t size);  // model.safetensors.index.json
int model_config(const uint8_t* data, size_t size);       // config.json
int tokenizer_json(const uint8_t* data, size_t size);     // tokenizer.json, then encode/decode
int tokenize_text(const uint8_t* data, size_t size);      // text through the fixtures' tokenizers
int store_manifest(const uint8_t* data, size_t size);     // a weight store's manifest.json
int chat_template(const uint8_t* data, size_t size);      // a Jinja chat template rendering a request
int constraint(const uint8_t* data, size_t size);         // a JSON Schema, regex or choice list, then text

struct Target {
  std::string_view name;  // the directory of its corpus, dictionary and reproducers
  Entry entry;
};
inline constexpr Target kTargets[] = {
    {"request_line", request_line},     {"safetensors_file", safetensors_file},
    {"safetensors_index", safetensors_index}, {"model_config", model_config},
    {"tokenizer_json", tokenizer_json}, {"tokenize_text", tokenize_text},
    {"store_manifest", store_manifest}, {"chat_template", chat_template},
    {"constraint", constraint},
};

// Aborts with `what` when `ok` is false: the fuzzer's crash.
void require(bool ok, const char* what);

}  // namespace strata::fuzz
