// gemma4 make-test-model: write a random-weight checkpoint with the names,
// shapes, dtypes and metadata of a real one (see tools/test_model.h).
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "tools/test_model.h"

namespace g4::cli {

void add_make_test_model_command(CLI::App& app) {
  struct Args {
    std::string arch, scale = "tiny", format = "gguf", type = "f32", out, vocab;
    uint64_t seed = 0;
    int threads = 0;
    int vocab_size = 0;
    bool dequantized = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "make-test-model",
      "Write a random-weight Gemma 4 checkpoint (GGUF file or HF folder) with real tensor names, shapes and metadata");
  cmd->add_option("--arch", args->arch, "Model family: e2b, e4b, 26b-a4b, 31b")
      ->required()
      ->check(CLI::IsMember({"e2b", "e4b", "26b-a4b", "31b"}));
  cmd->add_option("--scale", args->scale, "tiny (every mechanism, small width) or full (released shapes)")
      ->check(CLI::IsMember({"tiny", "full"}))
      ->capture_default_str();
  cmd->add_option("--format", args->format, "gguf (one file) or hf (folder with config.json, model.safetensors, tokenizer.json)")
      ->check(CLI::IsMember({"gguf", "hf"}))
      ->capture_default_str();
  cmd->add_option("--type", args->type,
                  "Weight type: f32, f16, bf16; GGUF also q8_0, q4_0, q4_1, q5_0, q5_1, mxfp4, q4_k, q5_k, q6_k, q8_k "
                  "(GGUF keeps 1-D tensors and the MoE router in f32; rows that do not fit the block fall back as "
                  "llama-quantize does)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "mxfp4", "q4_k", "q5_k",
                             "q6_k", "q8_k"}))
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "Seed; the same seed gives identical weights in both formats")
      ->capture_default_str();
  cmd->add_option("--out", args->out, "Output: GGUF file path, or folder for --format hf")->required();
  cmd->add_option("--vocab", args->vocab,
                  "Real vocabulary GGUF (e.g. ggml-vocab-gemma-4.gguf); default: a small synthetic vocabulary");
  cmd->add_option("--vocab-size", args->vocab_size, "Size of the synthetic vocabulary (>= 1024; 0 = 1024 for tiny, 262144 for full)")
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "Generator threads (0 = all cores)")->capture_default_str();
  cmd->add_flag("--dequantized", args->dequantized,
                "GGUF: write every tensor as f32 holding exactly the values of the --type file "
                "(quantized and expanded back): the same numbers without the quantized kernels");

  cmd->callback([args] {
    TestModelOptions o;
    o.arch = *test_arch_from_name(args->arch);
    o.scale = *test_scale_from_name(args->scale);
    o.format = *test_format_from_name(args->format);
    o.type = *ggml_type_from_name(args->type);
    o.seed = args->seed;
    o.out = args->out;
    o.vocab_path = args->vocab;
    o.synthetic_vocab_size = args->vocab_size;
    o.threads = args->threads;
    o.dequantized = args->dequantized;
    const TestModelResult r = write_test_model(o);
    const ModelConfig& c = r.config;
    std::printf("wrote %s (%s, %s %s, %s, seed %llu)\n", r.path.c_str(), args->format.c_str(), args->arch.c_str(),
                args->scale.c_str(), args->type.c_str(), static_cast<unsigned long long>(args->seed));
    std::printf("  config: %d layers, hidden %d, heads %d, vocab %d%s%s%s\n", c.n_layers, c.hidden, c.n_heads,
                c.vocab_size, c.ple_dim ? ", PLE" : "", c.n_kv_shared_layers ? ", KV sharing" : "",
                c.moe ? ", MoE" : "");
    std::printf("  tensors: %zu, tensor data %.3f MB, on disk %.3f MB (%zu files)\n", r.n_tensors,
                r.tensor_bytes / 1e6, r.file_bytes / 1e6, r.files.size());
    std::printf("  time: %.2f s\n", r.seconds);
  });
}

}  // namespace g4::cli
