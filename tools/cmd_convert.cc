// strata convert: pack a Hugging Face model directory into strata's weight store (one file per
// layer, 4 KiB-aligned tensors, checksummed manifest), optionally int4-g64 compressed. The store
// loads anywhere a model directory does (strata info, complete, generate).
#include <cstdio>
#include <string>

#include "commands.h"
#include "common/log.h"
#include "common/units.h"
#include "runtime/convert.h"
#include "storage/io_backend.h"

namespace strata::tools {

namespace {

struct ConvertArgs {
  std::string model;
  std::string out;
  std::string compress = "none";
  bool verbose = false;
};

Status run(const ConvertArgs& a) {
  Logger log(a.verbose ? LogLevel::kDebug : LogLevel::kInfo);
  STRATA_ASSIGN_OR_RETURN(auto io, storage::make_io_backend({}, log));
  runtime::ConvertOptions options;
  options.compress = a.compress;
  STRATA_ASSIGN_OR_RETURN(runtime::ConvertReport r,
                          runtime::convert_model(a.model, a.out, options, *io, log));
  std::printf("wrote %s: %d tensors (%d int4-g64), %s -> %s in %.2f s (I/O: %s)\n", a.out.c_str(),
              r.tensors, r.compressed, format_bytes(r.source_bytes).c_str(),
              format_bytes(r.stored_bytes).c_str(), r.seconds, std::string(io->name()).c_str());
  return Status::ok();
}

}  // namespace

void register_convert(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand(
      "convert", "Pack a Hugging Face model into strata's aligned weight store for O_DIRECT reads");
  static ConvertArgs args;
  cmd->add_option("--model", args.model, "Hugging Face model directory")->required();
  cmd->add_option("--out", args.out, "store directory to create (must not exist, or be empty)")
      ->required();
  cmd->add_option("--compress", args.compress, "none or int4-g64 (the layers' linear weights)")
      ->check(CLI::IsMember({"none", "int4-g64"}));
  cmd->add_flag("--verbose", args.verbose, "log every tensor");
  cmd->callback([exit_code] { *exit_code = report("convert", run(args)); });
}

}  // namespace strata::tools
