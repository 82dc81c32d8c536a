// `gemma4 convert HF_DIR -o OUT.gguf [--type T]`: Hugging Face checkpoint ->
// GGUF with llama.cpp's conventions (tools/convert.h). Progress on stderr;
// --json prints {"output", "file_type", "ftype", "tensors": {name: type}} on
// stdout.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "tools/convert.h"

namespace g4::cli {

void add_convert_command(CLI::App& app) {
  struct Args {
    ConvertOptions o;
    bool json = false;
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "convert", "Convert a Hugging Face Gemma 4 checkpoint (safetensors) to a GGUF file that llama.cpp also loads");
  cmd->add_option("HF_DIR", a->o.input,
                  "Hugging Face folder: config.json, model.safetensors (or sharded), tokenizer.json")
      ->required();
  cmd->add_option("-o,--out", a->o.output, "output GGUF file")->required();
  cmd->add_option("--type", a->o.type,
                  "tensor type: auto (the checkpoint's bf16/f16), f32, f16, bf16, q8_0 as llama.cpp's converter "
                  "writes them, or any `gemma4 quantize` type (q4_0, q4_k_m, ...) with llama-quantize's recipe")
      ->capture_default_str();
  cmd->add_option("-t,--threads", a->o.threads, "threads (0 = physical cores)")->capture_default_str();
  cmd->add_flag("--json", a->json, "print a JSON summary (output, file type, every tensor's type) on stdout");
  cmd->add_flag("-q,--quiet", a->quiet, "no progress output on stderr");
  cmd->callback([a] {
    a->o.progress = !a->quiet;
    const ConvertResult r = convert_hf_to_gguf(a->o);
    if (a->json) {
      nlohmann::ordered_json j;
      j["output"] = r.output;
      j["file_type"] = r.file_type;
      j["ftype"] = r.ftype;
      j["n_tensors"] = r.n_tensors;
      j["file_bytes"] = r.file_bytes;
      nlohmann::ordered_json t = nlohmann::ordered_json::object();
      for (const auto& [name, type] : r.tensor_types) t[name] = ggml_type_name(type);
      j["tensors"] = t;
      std::printf("%s\n", j.dump(2).c_str());
    }
  });
}

}  // namespace g4::cli
