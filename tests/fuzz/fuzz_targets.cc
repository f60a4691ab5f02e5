// The entry functions of fuzz_targets.h.
#include "fuzz/fuzz_targets.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "common/json_read.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "storage/store_format.h"
#include "text/batch_request.h"
#include "text/chat_template.h"
#include "text/constraint.h"
#include "text/tokenizer.h"

#ifndef STRATA_FUZZ_DATA_DIR
#define STRATA_FUZZ_DATA_DIR ""
#endif

namespace strata::fuzz {

namespace {

std::string_view as_text(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// The tokenizers of tests/data/tokenizers and the llama_text fixture, loaded once.
const std::vector<std::unique_ptr<text::Tokenizer>>& fixture_tokenizers() {
  static const auto* tokenizers = [] {
    auto* v = new std::vector<std::unique_ptr<text::Tokenizer>>();
    const char* env = std::getenv("STRATA_TEST_DATA");
    const std::filesystem::path data = env && *env ? env : STRATA_FUZZ_DATA_DIR;
    std::vector<std::filesystem::path> dirs = {data / "fixtures" / "llama_text"};
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(data / "tokenizers", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
      if (it->is_directory()) dirs.push_back(it->path());
    for (const auto& d : dirs) {
      auto t = text::Tokenizer::load_dir(d);
      if (t.is_ok()) v->push_back(std::move(*t));
    }
    require(!v->empty(), "no tokenizer fixtures found (set STRATA_TEST_DATA to tests/data)");
    return v;
  }();
  return *tokenizers;
}

// Encodes and decodes `s` with `tok`, checking what must always hold.
void exercise(const text::Tokenizer& tok, std::string_view s) {
  const std::vector<int32_t> ids = tok.encode(s);
  for (int32_t id : ids) require(id >= 0 && id < tok.vocab_size(), "encode produced an id outside the vocabulary");
  (void)tok.decode(ids);
  (void)tok.decode(ids, /*skip_special_tokens=*/true);
  (void)tok.encode(s, /*add_special_tokens=*/false);
}

}  // namespace

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
  std::abort();
}

int request_line(const uint8_t* data, size_t size) {
  const std::string_view line = as_text(data, size);
  text::ParsedLine p = text::parse_request_line(line, 7);
  // Whatever the line, what strata writes for it must read back as a strata result.
  const std::string err = text::format_error(7, p.custom_id, p.request ? text::RequestError{"x", "y"} : p.error);
  auto back = text::parse_result_line(err);
  require(back.has_value() && back->line == 7 && !back->ok, "an error line does not read back");
  require(back->custom_id == p.custom_id, "an error line's custom_id does not read back");
  if (p.request) {
    require(!p.request->custom_id.empty(), "a request without a custom_id was accepted");
    text::CompletionResult res;
    res.text = std::string(line.substr(0, 64));
    res.finish_reason = "stop";
    auto ok = text::parse_result_line(text::format_result(*p.request, "m", res, 0));
    require(ok.has_value() && ok->ok && ok->custom_id == p.request->custom_id, "a result line does not read back");
  }
  (void)text::parse_result_line(line);
  return 0;
}

int safetensors_file(const uint8_t* data, size_t size) {
  // The bytes as a file, through the same open() as a model's weights.
  const int fd = memfd_create("safetensors", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (size > 0 && ::write(fd, data, size) != static_cast<ssize_t>(size)) {
    ::close(fd);
    return 0;
  }
  auto f = model::SafetensorsFile::open("/proc/self/fd/" + std::to_string(fd));
  if (f.is_ok()) {
    for (const model::SafetensorsEntry& e : (*f)->entries()) {
      require(e.end <= (*f)->file_size() - (*f)->data_offset(), "an accepted tensor lies outside the file");
      if (e.dtype) (void)(*f)->read(e);
    }
  }
  ::close(fd);
  return 0;
}

int safetensors_index(const uint8_t* data, size_t size) {
  auto index = model::parse_safetensors_index(as_text(data, size), "index.json");
  if (!index.is_ok()) return 0;
  for (const auto& [tensor, shard] : index->weight_map) {
    const std::filesystem::path p(shard);
    require(!shard.empty() && !p.is_absolute(), "an absolute or empty shard name was accepted");
    for (const auto& part : p) require(part != "..", "a shard name leaving the model directory was accepted");
  }
  return 0;
}

int model_config(const uint8_t* data, size_t size) {
  auto j = parse_json(as_text(data, size), "config.json");
  if (!j.is_ok()) return 0;
  auto c = model::parse_config(*j, "config.json");
  if (!c.is_ok()) return 0;
  require(c->vocab_size > 0 && c->hidden_size > 0 && c->num_layers > 0 && c->head_dim > 0, "a dimension is not positive");
  for (int64_t id : c->eos_token_ids) require(id >= 0 && id < c->vocab_size, "an eos id outside the vocabulary");
  (void)c->window_of_layer(c->num_layers - 1);
  if (c->is_moe()) {
    require(c->experts_per_token >= 1 && c->experts_per_token <= c->num_experts, "top-k outside the experts");
    require(c->expert_intermediate_size > 0 && c->num_experts * c->num_layers <= (int64_t{1} << 20),
            "expert sizes out of bounds");
    int64_t sparse = 0;
    for (int64_t i = 0; i < c->num_layers; ++i) sparse += c->is_sparse_layer(i);
    require(c->uniform_layers() == (sparse == 0 || sparse == c->num_layers), "uniform_layers disagrees with the layers");
  }
  return 0;
}

int tokenizer_json(const uint8_t* data, size_t size) {
  auto j = parse_json(as_text(data, size), "tokenizer.json", JsonLimits{.max_bytes = 1 << 20, .max_depth = 64});
  if (!j.is_ok()) return 0;
  auto t = text::Tokenizer::from_json(*j, nlohmann::json::object(), "tokenizer.json");
  if (!t.is_ok()) return 0;
  for (std::string_view s : {"Hello world", " a  b\tc\n", "caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac", "\xff\xfe bad utf8", ""})
    exercise(**t, s);
  return 0;
}

int tokenize_text(const uint8_t* data, size_t size) {
  const auto& tokenizers = fixture_tokenizers();
  if (size == 0) return 0;
  // The first byte picks the tokenizer; the rest is the text.
  exercise(*tokenizers[data[0] % tokenizers.size()], as_text(data + 1, size - 1));
  return 0;
}

int store_manifest(const uint8_t* data, size_t size) {
  auto m = storage::parse_manifest(as_text(data, size), "manifest.json");
  if (!m.is_ok()) return 0;
  for (const storage::StoreTensor& t : m->tensors) {
    auto want = storage::stored_bytes(t.shape, t.dtype, t.compression);
    require(want && *want == t.bytes && t.offset % storage::kStoreAlignment == 0, "an inconsistent tensor was accepted");
  }
  // What strata writes must read back.
  auto again = storage::parse_manifest(storage::manifest_to_json(*m), "manifest.json");
  require(again.is_ok() && again->tensors.size() == m->tensors.size(), "a manifest does not round-trip");
  return 0;
}

int chat_template(const uint8_t* data, size_t size) {
  // "TEMPLATE\0REQUEST": a Jinja template and a chat request line; without a NUL, the bytes are the
  // template and the request is a fixed conversation with a system prompt, a tool call and tools.
  const std::string_view all = as_text(data, size);
  const size_t nul = all.find('\0');
  const std::string source(all.substr(0, nul));
  const std::string_view line =
      nul != std::string_view::npos
          ? all.substr(nul + 1)
          : R"({"custom_id": "c", "body": {"messages": [{"role": "system", "content": "Be terse."},
             {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
             {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function",
              "function": {"name": "get", "arguments": "{\"city\": \"Oslo\"}"}}]},
             {"role": "tool", "tool_call_id": "t1", "content": "rain"}, {"role": "user", "content": "And?"}],
             "tools": [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}]}})";
  text::ParsedLine p = text::parse_request_line(line, 1);
  if (!p.request || p.request->messages.empty()) return 0;
  auto t = text::ChatTemplate::from_jinja(source, "fuzz.jinja");
  if (!t.is_ok()) return 0;
  t->set_special_tokens({{"bos_token", "<s>"}, {"eos_token", "</s>"}});
  text::ChatOptions options = p.request->chat;
  options.now = std::tm{};  // the same text on every run
  auto rendered = t->render(p.request->messages, options);
  if (rendered.is_ok()) require(rendered->size() <= (64u << 20), "a rendering past the output bound");
  return 0;
}

// The first byte picks what the rest is up to a NUL: 's' a JSON Schema, 'r' a regex, 'c' choices
// one per line (anything else: a schema). The bytes after the NUL are fed to the compiled
// constraint as generated text: a refused byte leaves the state as it was, and a state that says
// nothing may follow refuses every byte.
int constraint(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view all = as_text(data + 1, size - 1);
  const size_t nul = all.find('\0');
  const std::string_view spec = all.substr(0, nul);
  const std::string_view text = nul == std::string_view::npos ? std::string_view() : all.substr(nul + 1);
  Result<std::shared_ptr<const text::Constraint>> c = invalid_argument("none");
  if (data[0] == 'r') {
    c = text::Constraint::regex(spec, "guided_regex");
  } else if (data[0] == 'c') {
    std::vector<std::string> choices;
    size_t at = 0;
    while (at <= spec.size()) {
      const size_t nl = spec.find('\n', at);
      choices.emplace_back(spec.substr(at, nl == std::string_view::npos ? std::string_view::npos : nl - at));
      if (nl == std::string_view::npos) break;
      at = nl + 1;
    }
    c = text::Constraint::choice(choices, "guided_choice");
  } else {
    auto schema = parse_json(spec, "schema");
    if (!schema.is_ok()) return 0;
    c = text::Constraint::json_schema(nlohmann::ordered_json::parse(schema->dump()), "response_format.json_schema.schema");
  }
  if (!c.is_ok()) {
    require(!c.status().message().empty(), "a constraint refused without a message");
    return 0;
  }
  text::ConstraintState st = (*c)->start();
  for (unsigned char ch : text) {
    const std::string before = st.key();
    const bool dead = st.dead_end();
    if (!st.feed(ch)) {
      require(st.key() == before, "a refused byte changed the constraint's state");
    } else {
      require(!dead, "a state that allows nothing more took a byte");
    }
    (void)st.complete();
  }
  return 0;
}

}  // namespace strata::fuzz
