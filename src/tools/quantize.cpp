#include "tools/quantize.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <numeric>
#include <set>

#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "tools/progress.h"
#include "tools/quant_recipe.h"
#include "tools/tensor_convert.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;

std::string human_mb(uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(b) / 1e6);
  return buf;
}

// <arch>.key as an int, or `def` when absent.
int arch_int(const GgufFile& f, const std::string& arch, const char* key, int def) {
  const GgufValue* v = f.find(arch + "." + key);
  if (!v) return def;
  const int64_t x = v->as_i64(arch + "." + key);
  if (x < 0 || x > (1 << 20)) fail("GGUF '", f.path(), "': ", arch, ".", key, " = ", x, " is out of range");
  return static_cast<int>(x);
}

}  // namespace

QuantizeResult quantize_gguf(const QuantizeOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (o.input.empty() || o.output.empty()) fail("quantize: give an input GGUF, an output path and a type");
  if (o.threads < 0) fail("quantize: --threads must not be negative");
  const std::optional<QuantFileType> ft = quant_file_type_from_name(o.type);
  if (!ft) fail("quantize: unknown type '", o.type, "' (choose from: ", quant_file_type_names(), ")");
  QuantRecipeOptions ropt;
  ropt.pure = o.pure;
  for (const std::string& s : o.tensor_types) ropt.overrides.push_back(parse_tensor_type_override(s));

  std::error_code ec;
  if (!fs::exists(o.input, ec)) fail("quantize: input '", o.input, "' does not exist");
  if (fs::is_directory(o.input, ec))
    fail("quantize: '", o.input,
         "' is a folder; quantize reads a GGUF file (use `gemma4 convert` for Hugging Face "
         "checkpoints)");
  if (fs::exists(o.output, ec) && fs::equivalent(o.output, o.input, ec))
    fail("quantize: the output '", o.output, "' is the input");
  const GgufFile in = GgufFile::open(o.input);
  if (!in.has("general.architecture"))
    fail("quantize: '", o.input, "' has no general.architecture key (not a model GGUF)");
  const std::string arch = in.get_string("general.architecture");
  if (!in.has(arch + ".block_count")) fail("quantize: '", o.input, "' has no ", arch, ".block_count key");
  const QuantModelInfo model{arch_int(in, arch, "block_count", 0), arch_int(in, arch, "expert_count", 0)};

  // llama-quantize's order, and the plan.
  std::vector<size_t> order(in.tensors().size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return llama_tensor_order_less(in.tensors()[a].name, in.tensors()[b].name);
  });
  std::vector<QuantTensorIn> tin;
  for (size_t i : order) {
    const TensorView& t = in.tensors()[i];
    tin.push_back({t.name, t.ne, t.type});
  }
  const std::vector<QuantDecision> plan = plan_quant_types(tin, *ft, model, ropt);

  // Everything that could fail is checked before the output is created.
  std::set<GgmlType> targets;
  for (size_t k = 0; k < order.size(); ++k) {
    const TensorView& t = in.tensors()[order[k]];
    const GgmlType to = plan[k].type;
    if (to == t.type) continue;
    if (is_quantized_type(t.type) && !o.allow_requantize)
      fail("quantize: tensor '", t.name, "' is already ", ggml_type_name(t.type), "; requantizing it to ",
           ggml_type_name(to), " loses precision twice — pass --allow-requantize to do it anyway");
    if (!kernels::type_supported(t.type))
      fail("quantize: tensor '", t.name, "' has type ", ggml_type_name(t.type),
           ", which this build cannot read back to convert it to ", ggml_type_name(to));
    targets.insert(to);
  }
  for (GgmlType t : targets) {
    try {
      check_quantizable(t);
    } catch (const Error& e) {
      fail("quantize: ", ft->name, " needs ", ggml_type_name(t), " tensors, which this build cannot write yet (",
           e.what(), ")");
    }
  }

  GgufWriter w(o.output);
  for (const auto& [k, v] : in.metadata()) {
    if (k == "split.no" || k == "split.count" || k == "split.tensors.count") continue;
    w.set(k, v);
  }
  w.set("general.quantization_version", GgufValue::u32(2));
  w.set("general.file_type", GgufValue::u32(ft->ftype));
  for (size_t k = 0; k < order.size(); ++k) {
    const TensorView& t = in.tensors()[order[k]];
    w.add_tensor_info(t.name, plan[k].type, t.ne);
  }
  w.write_header();

  ThreadPool pool(o.threads);
  QuantizeResult r;
  uint64_t total = 0;
  for (const TensorView& t : in.tensors()) total += t.nbytes;
  Progress bar("quantize", total, o.progress ? stderr : nullptr);
  for (size_t k = 0; k < order.size(); ++k) {
    const TensorView& t = in.tensors()[order[k]];
    RowConvertOptions ro;
    ro.pool = &pool;
    ro.validate = true;
    r.bytes_out += convert_tensor_rows(
        t, plan[k].type,
        [&](const uint8_t* p, size_t n, uint64_t src_bytes) {
          w.write_tensor_chunk(t.name, p, n);
          r.bytes_in += src_bytes;
          bar.advance(src_bytes, t.name);
        },
        ro);
    r.n_converted += plan[k].type != t.type;
    r.n_fallback += plan[k].fell_back;
    r.tensor_types.emplace_back(t.name, plan[k].type);
    ++r.n_tensors;
  }
  w.finish();
  r.file_type = ft->name;
  r.ftype = ft->ftype;
  r.file_bytes = fs::file_size(o.output, ec);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string summary = "wrote " + o.output + " (" + ft->name + ", " + std::to_string(r.n_converted) + " of " +
                        std::to_string(r.n_tensors) + " tensors converted, " + human_mb(r.bytes_in) + " -> " +
                        human_mb(r.file_bytes) + ")";
  if (r.n_fallback)
    summary += "; " + std::to_string(r.n_fallback) + " tensor(s) needed a fallback type for their row length";
  bar.finish(summary);
  return r;
}

}  // namespace g4
