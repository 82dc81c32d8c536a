// `convert` (tools/convert.h): Hugging Face folders from make-test-model, all
// four tiny families, to GGUF. Expectations come from the weights themselves
// (the HF folder and make-test-model's own GGUF of the same seed hold the
// same values), from llama.cpp's converter rules (convert_hf_to_gguf.py /
// conversion/gemma.py, read by hand) and from the spec (rope_freqs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/checkpoint.h"
#include "model/forward.h"
#include "test_util.h"
#include "tools/checksum.h"
#include "tools/convert.h"
#include "tools/quantize.h"
#include "tools/tensor_convert.h"
#include "tools/test_model.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;
using testutil::expect_error;

fs::path tmpdir() { return testutil::process_temp_dir("g4_convert"); }

std::string make_model(TestArch arch, TestFormat fmt, GgmlType type, const std::string& tag, uint64_t seed = 7) {
  TestModelOptions o;
  o.arch = arch;
  o.format = fmt;
  o.type = type;
  o.seed = seed;
  o.threads = 2;
  o.out =
      (tmpdir() / (std::string(test_arch_name(arch)) + "-" + tag + (fmt == TestFormat::Gguf ? ".gguf" : ""))).string();
  if (!fs::exists(o.out)) write_test_model(o);
  return o.out;
}

ConvertResult run_convert(const std::string& in, const std::string& out, const std::string& type) {
  ConvertOptions o;
  o.input = in;
  o.output = out;
  o.type = type;
  o.threads = 2;
  o.progress = false;
  return convert_hf_to_gguf(o);
}

std::vector<int32_t> prompt(int64_t n, int vocab) {
  std::vector<int32_t> ids{2};
  uint64_t x = 12345;
  while (static_cast<int64_t>(ids.size()) < n) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    ids.push_back(3 + static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab - 3)));
  }
  return ids;
}

std::vector<float> logits(const std::string& path, const std::vector<int32_t>& ids) {
  ModelParams p;
  p.n_ctx = static_cast<int64_t>(ids.size());
  p.max_batch = 16;
  p.n_threads = 2;
  auto m = Model::open(path, p);
  std::vector<float> out;
  for (size_t b = 0; b < ids.size(); b += 16) {
    const size_t n = std::min<size_t>(16, ids.size() - b);
    auto l = m->forward(std::span<const int32_t>(ids.data() + b, n), LogitsMode::All);
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

std::map<std::string, const TensorView*> tensors_of(const GgufFile& f) {
  std::map<std::string, const TensorView*> m;
  for (const TensorView& t : f.tensors()) m[t.name] = &t;
  return m;
}

// Files in a folder (to check that failures leave nothing behind).
std::set<std::string> listing(const fs::path& dir) {
  std::set<std::string> s;
  for (const auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
  return s;
}

class ConvertF32 : public ::testing::TestWithParam<TestArch> {};

TEST_P(ConvertF32, SameWeightsAndLogitsAsTheHfFolder) {
  const TestArch arch = GetParam();
  const std::string hf = make_model(arch, TestFormat::Hf, GgmlType::F32, "f32-hf");
  const std::string ref = make_model(arch, TestFormat::Gguf, GgmlType::F32, "f32-ref.gguf");
  const std::string out = (tmpdir() / (std::string(test_arch_name(arch)) + "-conv-f32.gguf")).string();
  const ConvertResult r = run_convert(hf, out, "f32");
  EXPECT_EQ(r.file_type, "F32");

  // Every tensor: same values as the HF checkpoint, and byte for byte the
  // GGUF make-test-model writes from the same seed (same names, F32).
  const Checkpoint hck = Checkpoint::open(hf);
  const GgufFile conv = GgufFile::open(out);
  const GgufFile refg = GgufFile::open(ref);
  auto ct = tensors_of(conv), rt = tensors_of(refg);
  EXPECT_EQ(ct.size(), rt.size());
  for (const TensorView& h : hck.tensors()) {
    ASSERT_TRUE(ct.count(h.name)) << h.name;
    EXPECT_EQ(checksum_hex(tensor_value_checksum(h)), checksum_hex(tensor_value_checksum(*ct[h.name]))) << h.name;
  }
  for (const auto& [name, t] : rt) {
    ASSERT_TRUE(ct.count(name)) << name;
    EXPECT_EQ(ct[name]->type, t->type) << name;
    EXPECT_EQ(ct[name]->ne, t->ne) << name;
    EXPECT_EQ(tensor_checksum(*ct[name]), tensor_checksum(*t)) << name;
  }
  // rope_freqs: 64 x 1.0 then 1e30 for the released shape; the tiny global
  // head of 64 lanes rotates 0.25 x 64 / 2 = 8 pairs of its 32.
  const TensorView* rf = conv.tensor("rope_freqs.weight");
  ASSERT_TRUE(rf);
  ASSERT_EQ(rf->type, GgmlType::F32);
  ASSERT_EQ(rf->ne, std::vector<int64_t>{32});
  const float* f = reinterpret_cast<const float*>(rf->data);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(f[i], i < 8 ? 1.0f : 1e30f) << i;
  // Metadata a llama.cpp loader needs: identity, file type, the tokenizer.
  EXPECT_EQ(conv.get_string("general.architecture"), "gemma4");
  EXPECT_EQ(conv.get_u64("general.file_type"), 0u);
  EXPECT_EQ(conv.get_u64("general.quantization_version"), 2u);
  for (const char* k : {"tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                        "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
    ASSERT_TRUE(conv.has(k)) << k;
    EXPECT_EQ(conv.get(k).to_display_string(1 << 20), refg.get(k).to_display_string(1 << 20)) << k;
  }

  // The forward pass: the converted GGUF against the HF folder.
  const ModelConfig& c = hck.config();
  const std::vector<int32_t> ids = prompt(2 * c.sliding_window + 5, c.vocab_size);
  const std::vector<float> a = logits(hf, ids), b = logits(out, ids);
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
  std::printf("[convert %s f32] max |dlogit| HF vs converted GGUF: %.3g over %zu positions\n", test_arch_name(arch),
              worst, ids.size());
  EXPECT_LE(worst, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, ConvertF32,
                         ::testing::Values(TestArch::E2B, TestArch::E4B, TestArch::A26B, TestArch::D31B),
                         [](const auto& info) {
                           std::string n = test_arch_name(info.param);
                           n.erase(std::remove(n.begin(), n.end(), '-'), n.end());
                           return n;
                         });

// The HF folder `src` re-written as two safetensors shards with a
// model.safetensors.index.json, tensors alternating between the shards.
void write_sharded_copy(const fs::path& src, const fs::path& dst) {
  fs::create_directories(dst);
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    fs::copy_file(src / f, dst / f, fs::copy_options::overwrite_existing);
  const SafetensorsFile in = SafetensorsFile::open((src / "model.safetensors").string());
  const std::string names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  nlohmann::json map = nlohmann::json::object();
  uint64_t total = 0;
  for (int k = 0; k < 2; ++k) {
    SafetensorsWriter w((dst / names[k]).string());
    std::vector<const TensorView*> mine;
    for (size_t i = k; i < in.tensors().size(); i += 2) mine.push_back(&in.tensors()[i]);
    for (const TensorView* t : mine)
      w.add_tensor_info(t->name, t->type, std::vector<int64_t>(t->ne.rbegin(), t->ne.rend()));
    w.write_header();
    for (const TensorView* t : mine) {
      w.write_tensor_data(t->name, t->data, t->nbytes);
      map[t->name] = names[k];
      total += t->nbytes;
    }
    w.finish();
  }
  std::ofstream(dst / "model.safetensors.index.json")
      << nlohmann::json{{"metadata", {{"total_size", total}}}, {"weight_map", map}}.dump(2);
}

TEST(Convert, ShardedFolderGivesTheSameFile) {
  const std::string hf = make_model(TestArch::A26B, TestFormat::Hf, GgmlType::BF16, "bf16-hf");
  const fs::path sharded = tmpdir() / "26b-sharded";
  write_sharded_copy(hf, sharded);
  ASSERT_FALSE(fs::exists(sharded / "model.safetensors"));
  const std::string a = (tmpdir() / "26b-single.gguf").string(), b = (tmpdir() / "26b-sharded.gguf").string();
  run_convert(hf, a, "f16");
  run_convert(sharded.string(), b, "f16");
  const GgufFile ga = GgufFile::open(a), gb = GgufFile::open(b);
  ASSERT_EQ(ga.tensors().size(), gb.tensors().size());
  for (const TensorView& t : ga.tensors()) {
    const TensorView* u = gb.tensor(t.name);
    ASSERT_TRUE(u) << t.name;
    EXPECT_EQ(u->type, t.type) << t.name;
    EXPECT_EQ(tensor_checksum(*u), tensor_checksum(t)) << t.name;
  }
}

TEST(Convert, Bf16CheckpointAutoStaysBf16) {
  // auto = the first 2-D tensor's dtype; the converter stores norms (F32 of
  // the bf16 values), the router in F32 and everything else BF16 — exactly
  // what make-test-model's bf16 GGUF holds.
  for (TestArch arch : {TestArch::E2B, TestArch::A26B}) {
    const std::string hf = make_model(arch, TestFormat::Hf, GgmlType::BF16, "bf16-hf");
    const std::string ref = make_model(arch, TestFormat::Gguf, GgmlType::BF16, "bf16-ref.gguf");
    const std::string out = (tmpdir() / (std::string(test_arch_name(arch)) + "-conv-auto.gguf")).string();
    const ConvertResult r = run_convert(hf, out, "auto");
    EXPECT_EQ(r.file_type, "BF16");
    const GgufFile conv = GgufFile::open(out), refg = GgufFile::open(ref);
    EXPECT_EQ(conv.get_u64("general.file_type"), 32u);
    for (const auto& [name, t] : tensors_of(refg)) {
      const TensorView* c = conv.tensor(name);
      ASSERT_TRUE(c) << name;
      EXPECT_EQ(ggml_type_name(c->type), ggml_type_name(t->type)) << name;
      EXPECT_EQ(tensor_checksum(*c), tensor_checksum(*t)) << name;
    }
  }
}

TEST(Convert, Q8_0FollowsTheConvertersRules) {
  // convert_hf_to_gguf.py --outtype q8_0: every 2-D *.weight Q8_0 (also
  // per_layer_model_proj, which llama-quantize would skip), F16 where a row
  // is not whole Q8_0 blocks (the PLE proj: 16 columns), F32 for 1-D tensors
  // and the router.
  const std::string hf = make_model(TestArch::E2B, TestFormat::Hf, GgmlType::F32, "f32-hf");
  const std::string ref = make_model(TestArch::E2B, TestFormat::Gguf, GgmlType::Q8_0, "q8-ref.gguf");
  const std::string out = (tmpdir() / "e2b-conv-q8.gguf").string();
  run_convert(hf, out, "q8_0");
  const GgufFile conv = GgufFile::open(out), refg = GgufFile::open(ref);
  EXPECT_EQ(conv.get_u64("general.file_type"), 7u);
  EXPECT_EQ(conv.tensor("per_layer_model_proj.weight")->type, GgmlType::Q8_0);
  EXPECT_EQ(conv.tensor("token_embd.weight")->type, GgmlType::Q8_0);
  EXPECT_EQ(conv.tensor("blk.0.proj.weight")->type, GgmlType::F16);
  EXPECT_EQ(conv.tensor("blk.0.attn_norm.weight")->type, GgmlType::F32);
  EXPECT_EQ(conv.tensor("blk.0.layer_output_scale.weight")->type, GgmlType::F32);
  // Same quantizer as make-test-model (llama.cpp's reference): identical
  // blocks wherever both chose Q8_0 / F16.
  int compared = 0;
  for (const auto& [name, t] : tensors_of(refg)) {
    const TensorView* c = conv.tensor(name);
    ASSERT_TRUE(c) << name;
    if (c->type != t->type || t->type == GgmlType::F32) continue;
    EXPECT_EQ(tensor_checksum(*c), tensor_checksum(*t)) << name;
    ++compared;
  }
  EXPECT_GT(compared, 50);
}

TEST(Convert, RecipeTypeEqualsConvertThenQuantize) {
  // `convert --type q4_0` == `convert --type auto` + `quantize q4_0`, byte
  // for byte, for an F32 checkpoint (auto = F16 there: values go through F16).
  for (TestArch arch : {TestArch::E2B, TestArch::A26B}) {
    const std::string hf = make_model(arch, TestFormat::Hf, GgmlType::F32, "f32-hf");
    const std::string name = test_arch_name(arch);
    const std::string direct = (tmpdir() / (name + "-conv-q4.gguf")).string();
    const std::string autof = (tmpdir() / (name + "-conv-auto-f32src.gguf")).string();
    const std::string twostep = (tmpdir() / (name + "-conv-auto-q4.gguf")).string();
    run_convert(hf, direct, "q4_0");
    const ConvertResult a = run_convert(hf, autof, "auto");
    EXPECT_EQ(a.file_type, "F16");  // llama.cpp's heuristic for F32 checkpoints
    QuantizeOptions q;
    q.input = autof;
    q.output = twostep;
    q.type = "q4_0";
    q.threads = 2;
    q.progress = false;
    quantize_gguf(q);
    const GgufFile d = GgufFile::open(direct), t = GgufFile::open(twostep);
    EXPECT_EQ(d.get_u64("general.file_type"), 2u);
    ASSERT_EQ(d.tensors().size(), t.tensors().size());
    for (const auto& [n, tv] : tensors_of(t)) {
      const TensorView* dv = d.tensor(n);
      ASSERT_TRUE(dv) << n;
      EXPECT_EQ(ggml_type_name(dv->type), ggml_type_name(tv->type)) << n;
      EXPECT_EQ(tensor_checksum(*dv), tensor_checksum(*tv)) << n;
    }
  }
}

TEST(Convert, KQuantRecipesNeedTheirQuantizers) {
  // q4_k_m asks for Q4_K/Q6_K (and Q5_0/Q8_0 fallbacks). Until the kernels
  // can write those types the conversion must fail up front and cleanly;
  // once they can, it must produce the recipe's types.
  const std::string hf = make_model(TestArch::D31B, TestFormat::Hf, GgmlType::F32, "f32-hf");
  const std::string out = (tmpdir() / "31b-conv-q4km.gguf").string();
  bool can = true;
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q5_0}) {
    try {
      check_quantizable(t);
    } catch (const Error&) {
      can = false;
    }
  }
  if (!can) {
    const auto before = listing(tmpdir());
    expect_error([&] { run_convert(hf, out, "q4_k_m"); }, {"cannot write yet"});
    EXPECT_EQ(listing(tmpdir()), before) << "a failed convert left files behind";
    return;
  }
  run_convert(hf, out, "q4_k_m");
  const GgufFile g = GgufFile::open(out);
  EXPECT_EQ(g.get_u64("general.file_type"), 15u);
  EXPECT_EQ(g.tensor("blk.0.ffn_down.weight")->type, GgmlType::Q6_K);  // use_more_bits layer, 256 columns
  EXPECT_EQ(g.tensor("blk.1.ffn_down.weight")->type, GgmlType::Q4_K);
  EXPECT_EQ(g.tensor("blk.1.attn_v.weight")->type, GgmlType::Q5_0);  // Q4_K at 128 columns
  EXPECT_EQ(g.tensor("token_embd.weight")->type, GgmlType::Q8_0);
}

TEST(Convert, BadInputsFailCleanly) {
  const fs::path work = tmpdir() / "bad";
  fs::create_directories(work);
  const std::string hf = make_model(TestArch::E2B, TestFormat::Hf, GgmlType::F32, "f32-hf");
  const std::string ref = make_model(TestArch::E2B, TestFormat::Gguf, GgmlType::F32, "f32-ref.gguf");
  const std::string out = (work / "out.gguf").string();
  auto nothing_left = [&] { EXPECT_TRUE(listing(work).empty()) << "files left in " << work; };

  expect_error([&] { run_convert((work / "missing").string(), out, "f32"); }, {"does not exist"});
  nothing_left();
  expect_error([&] { run_convert(ref, out, "f32"); }, {"GGUF", "quantize"});
  nothing_left();
  expect_error([&] { run_convert(hf, out, "q3_k_m"); }, {"unknown --type", "q3_k_m"});
  nothing_left();
  // The output's folder is a regular file: cannot be created.
  expect_error([&] { run_convert(hf, ref + "/out.gguf", "f32"); }, {"out.gguf"});
  nothing_left();
  // A folder without tokenizer.json.
  const fs::path notok = work / "notok";
  fs::create_directories(notok);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(fs::path(hf) / f, notok / f);
  expect_error([&] { run_convert(notok.string(), (notok / "x.gguf").string(), "f32"); }, {"tokenizer.json"});
  EXPECT_FALSE(fs::exists(notok / "x.gguf"));
  fs::remove_all(notok);
  // A truncated safetensors file.
  const fs::path trunc = work / "trunc";
  fs::create_directories(trunc);
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(fs::path(hf) / f, trunc / f);
  {
    std::ifstream in(fs::path(hf) / "model.safetensors", std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(trunc / "model.safetensors", std::ios::binary) << data.substr(0, data.size() / 2);
  }
  expect_error([&] { run_convert(trunc.string(), (trunc / "x.gguf").string(), "f32"); }, {"model.safetensors"});
  EXPECT_FALSE(fs::exists(trunc / "x.gguf"));
  fs::remove_all(trunc);
}

}  // namespace
}  // namespace g4
