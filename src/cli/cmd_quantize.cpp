// `gemma4 quantize IN.gguf OUT.gguf TYPE [--pure] [--tensor-type REGEX=TYPE]...
// [--allow-requantize]`: llama-quantize's file types and recipes
// (tools/quantize.h, tools/quant_recipe.h). Progress on stderr; --json prints
// {"output", "file_type", "ftype", "tensors": {name: type}} on stdout.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "tools/quant_recipe.h"
#include "tools/quantize.h"

namespace g4::cli {

void add_quantize_command(CLI::App& app) {
  struct Args {
    QuantizeOptions o;
    bool json = false;
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "quantize", "Re-type a GGUF's tensors with llama-quantize's recipes (q4_k_m keeps attn_v/ffn_down higher, ...)");
  cmd->add_option("IN", a->o.input, "input GGUF")->required();
  cmd->add_option("OUT", a->o.output, "output GGUF")->required();
  cmd->add_option("TYPE", a->o.type, "file type: " + quant_file_type_names())->required();
  cmd->add_flag("--pure", a->o.pure, "every quantizable tensor gets TYPE (no recipe; shape fallbacks still apply)");
  cmd->add_option("--tensor-type", a->o.tensor_types,
                  "NAME_REGEX=TYPE: tensors whose name matches get TYPE (first match wins; e.g. attn_v=q8_0)");
  cmd->add_flag("--allow-requantize", a->o.allow_requantize,
                "allow changing tensors that are already quantized (dequantized first; loses precision)");
  cmd->add_option("-t,--threads", a->o.threads, "threads (0 = physical cores)")->capture_default_str();
  cmd->add_flag("--json", a->json, "print a JSON summary (output, file type, every tensor's type) on stdout");
  cmd->add_flag("-q,--quiet", a->quiet, "no progress output on stderr");
  cmd->callback([a] {
    a->o.progress = !a->quiet;
    const QuantizeResult r = quantize_gguf(a->o);
    if (a->json) {
      nlohmann::ordered_json j;
      j["output"] = a->o.output;
      j["file_type"] = r.file_type;
      j["ftype"] = r.ftype;
      j["n_tensors"] = r.n_tensors;
      j["n_converted"] = r.n_converted;
      j["n_fallback"] = r.n_fallback;
      j["file_bytes"] = r.file_bytes;
      nlohmann::ordered_json t = nlohmann::ordered_json::object();
      for (const auto& [name, type] : r.tensor_types) t[name] = ggml_type_name(type);
      j["tensors"] = t;
      std::printf("%s\n", j.dump(2).c_str());
    }
  });
}

}  // namespace g4::cli
