#include "tools/convert.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/tensor_specs.h"
#include "tools/hf_tokenizer_gguf.h"
#include "tools/progress.h"
#include "tools/quant_recipe.h"
#include "tools/tensor_convert.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;

// convert_hf_to_gguf.py --outtype values (LlamaFileType).
struct OutType {
  std::string name;
  uint32_t ftype;
  GgmlType type;
};
const OutType kConverterTypes[] = {
    {"F32", 0, GgmlType::F32}, {"F16", 1, GgmlType::F16}, {"BF16", 32, GgmlType::BF16}, {"Q8_0", 7, GgmlType::Q8_0}};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

int n_dims(const std::vector<int64_t>& ne) {
  for (int i = static_cast<int>(ne.size()) - 1; i >= 1; --i)
    if (ne[static_cast<size_t>(i)] > 1) return i + 1;
  return 1;
}

// ModelBase.prepare_tensors: the type the converter stores a tensor in.
GgmlType converter_type(const std::string& name, const std::vector<int64_t>& ne, GgmlType out) {
  // "Most of the codebase that takes in 1D tensors or norms only handles F32 tensors."
  if (n_dims(ne) <= 1 || ends_with(name, "_norm.weight")) return GgmlType::F32;
  // Always F32: the MoE router (llama-quantize never quantizes it either),
  // and anything not named *.weight (router/expert scales).
  if (name.find("ffn_gate_inp.weight") != std::string::npos || !ends_with(name, ".weight")) return GgmlType::F32;
  // gguf-py raises QuantError for rows that are not whole Q8_0 blocks and the
  // converter falls back to F16.
  if (out == GgmlType::Q8_0 && ne[0] % 32 != 0) return GgmlType::F16;
  return out;
}

// The converter's "auto": the dtype of the first tensor of 2+ dims.
OutType auto_type(const Checkpoint& ck) {
  for (const TensorView& t : ck.tensors()) {
    if (t.ne.size() < 2) continue;
    if (t.type == GgmlType::BF16) return kConverterTypes[2];
    if (t.type == GgmlType::F16) return kConverterTypes[1];
    break;
  }
  return kConverterTypes[1];  // "heuristics unable to detect tensor dtype, defaulting to --outtype f16"
}

std::string human_mb(uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(b) / 1e6);
  return buf;
}

}  // namespace

std::string convert_type_names() {
  std::string s = "auto, f32, f16, bf16, q8_0";
  for (const QuantFileType& t : quant_file_types()) {
    const std::string n = lower(t.name);
    if (n != "f32" && n != "f16" && n != "bf16" && n != "q8_0") s += ", " + n;
  }
  return s;
}

ConvertResult convert_hf_to_gguf(const ConvertOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (o.input.empty()) fail("convert: no input folder given");
  if (o.output.empty()) fail("convert: no output path given (-o OUT.gguf)");
  if (o.threads < 0) fail("convert: --threads must not be negative");

  // Resolve the requested type before touching any file.
  const std::string want = lower(o.type.empty() ? std::string("auto") : o.type);
  std::optional<OutType> direct;
  std::optional<QuantFileType> recipe;
  if (want != "auto") {
    for (const OutType& t : kConverterTypes)
      if (lower(t.name) == want) direct = t;
    if (!direct) {
      recipe = quant_file_type_from_name(want);
      if (!recipe) fail("convert: unknown --type '", o.type, "' (choose from: ", convert_type_names(), ")");
    }
  }

  std::error_code ec;
  if (!fs::exists(o.input, ec)) fail("convert: input '", o.input, "' does not exist");
  const Checkpoint ck = Checkpoint::open(o.input);
  if (ck.format() != CheckpointFormat::HfSafetensors)
    fail("convert: '", o.input,
         "' is a GGUF file; convert reads Hugging Face checkpoints "
         "(use `gemma4 quantize` to change the types of a GGUF)");
  const fs::path dir = fs::is_directory(o.input, ec) ? fs::path(o.input) : fs::path(o.input).parent_path();
  if (fs::exists(o.output, ec) && fs::equivalent(o.output, o.input, ec))
    fail("convert: the output '", o.output, "' is the input");
  const ModelConfig& c = ck.config();

  const HfTokenizerGguf tok = hf_tokenizer_gguf(dir.empty() ? "." : dir.string());
  const OutType base = direct ? *direct : auto_type(ck);

  // The tensors in the converter's order: the generated rope_freqs first,
  // then the checkpoint's tensors.
  struct Item {
    std::string name;
    std::vector<int64_t> ne;        // output shape
    std::optional<TensorView> src;  // nullopt: generated (rope_freqs)
    int64_t rows = -1;              // rows taken from src (token_embd trim)
    GgmlType conv_type;             // what the converter stores
    GgmlType type;                  // final type
  };
  std::vector<Item> items;
  std::vector<float> rope = rope_freqs_values(c);
  bool any_full = false;
  for (const LayerConfig& l : c.layers) any_full = any_full || l.type == LayerType::Full;
  if (any_full && !ck.tensor("rope_freqs.weight"))
    items.push_back(
        {"rope_freqs.weight", {static_cast<int64_t>(rope.size())}, std::nullopt, -1, GgmlType::F32, GgmlType::F32});
  for (const TensorView& t : ck.tensors()) {
    Item it{t.name, t.ne, t, -1, GgmlType::F32, GgmlType::F32};
    if (it.ne.empty()) it.ne = it.src->ne = {1};  // a 0-dim scalar (layer_scalar) is stored as {1}
    // Gemma3Model.modify_tensors: drop embedding rows beyond the tokenizer.
    if (t.name == "token_embd.weight" && t.ne.size() == 2 && t.ne[1] > tok.n_vocab_rows) {
      it.ne[1] = tok.n_vocab_rows;
      it.rows = tok.n_vocab_rows;
    }
    it.conv_type = converter_type(it.name, it.ne, base.type);
    items.push_back(std::move(it));
  }
  for (const Item& it : items)
    if (it.name == "token_embd.weight" && it.ne[1] != tok.n_tokens)
      fail("convert: the tokenizer has ", tok.n_tokens, " tokens but token_embd (embed_tokens) has ", it.ne[1],
           " rows; llama.cpp cannot load such a file");

  std::string file_type_name = base.name;
  uint32_t ftype = base.ftype;
  if (recipe) {
    std::vector<QuantTensorIn> in;
    for (const Item& it : items) in.push_back({it.name, it.ne, it.conv_type});
    const std::vector<QuantDecision> plan = plan_quant_types(in, *recipe, {c.n_layers, c.moe ? c.n_experts : 0});
    for (size_t i = 0; i < items.size(); ++i) items[i].type = plan[i].type;
    file_type_name = recipe->name;
    ftype = recipe->ftype;
  } else {
    for (Item& it : items) it.type = it.conv_type;
  }
  // Every target type must be producible before the output is created.
  std::set<GgmlType> targets;
  for (const Item& it : items) targets.insert(it.type);
  for (GgmlType t : targets) {
    try {
      check_quantizable(t);
    } catch (const Error& e) {
      fail("convert: --type ", o.type, " needs ", ggml_type_name(t), " tensors, which this build cannot write yet (",
           e.what(), ")");
    }
  }

  GgufWriter w(o.output);
  write_gguf_config(c, w);
  w.set("general.type", GgufValue::str("model"));
  // The converter's fallback name: the checkpoint folder's name.
  fs::path abs = fs::absolute(dir, ec).lexically_normal();
  if (abs.filename().empty()) abs = abs.parent_path();  // "folder/" normalises to "folder/"
  const std::string name = abs.filename().string();
  w.set("general.name", GgufValue::str(name.empty() ? "gemma4" : name));
  w.set("general.file_type", GgufValue::u32(ftype));
  w.set("general.quantization_version", GgufValue::u32(2));
  for (const auto& [k, v] : tok.keys) w.set(k, v);
  for (const Item& it : items) w.add_tensor_info(it.name, it.type, it.ne);
  w.write_header();

  // What the checkpoint holds besides the text decoder (vision/audio towers:
  // llama.cpp puts those in a separate mmproj file).
  if (o.progress)
    for (const std::string& n : ck.notes()) std::fprintf(stderr, "convert: note: %s\n", n.c_str());

  ThreadPool pool(o.threads);
  ConvertResult r;
  uint64_t total_in = 0;
  for (const Item& it : items)
    if (it.src) total_in += it.src->nbytes;
  Progress bar("convert", total_in, o.progress ? stderr : nullptr);
  for (const Item& it : items) {
    if (!it.src) {
      // rope_freqs: proportional RoPE as frequency divisors (spec §5.4).
      w.write_tensor_data(it.name, rope.data(), rope.size() * sizeof(float));
      r.bytes_out += rope.size() * sizeof(float);
    } else {
      RowConvertOptions ro;
      ro.n_rows = it.rows;
      ro.pool = &pool;
      if (it.type != it.conv_type && (it.conv_type == GgmlType::F16 || it.conv_type == GgmlType::BF16))
        ro.round_via = it.conv_type;
      r.bytes_out += convert_tensor_rows(
          *it.src, it.type,
          [&](const uint8_t* p, size_t n, uint64_t src_bytes) {
            w.write_tensor_chunk(it.name, p, n);
            r.bytes_in += src_bytes;
            bar.advance(src_bytes, it.name);
          },
          ro);
    }
    r.tensor_types.emplace_back(it.name, it.type);
    ++r.n_tensors;
  }
  w.finish();
  r.output = o.output;
  r.file_type = file_type_name;
  r.ftype = ftype;
  r.file_bytes = fs::file_size(o.output, ec);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bar.finish("wrote " + o.output + " (" + file_type_name + ", " + std::to_string(r.n_tensors) + " tensors, " +
             human_mb(r.file_bytes) + ")");
  return r;
}

}  // namespace g4
