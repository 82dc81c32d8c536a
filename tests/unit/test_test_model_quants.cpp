// make-test-model with the quants.h types (Q4_1, Q5_0, Q5_1, MXFP4, Q4_K, Q5_K,
// Q6_K, Q8_K): which tensors get which type (llama-quantize's fallback for
// rows that do not fit the block, its output-head rule for the tied
// embeddings), every stored tensor byte-identical to the reference quantizer
// applied to the generated values, the file loads, and the --dequantized twin
// holds exactly the quantized file's values in F32.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"
#include "core/dtype.h"
#include "kernels/kernels.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/tensor_specs.h"
#include "model/weights.h"
#include "tools/test_model.h"

using namespace g4;
namespace fs = std::filesystem;

namespace {

const GgmlType kNewTypes[] = {GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::MXFP4,
                              GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_K};

fs::path temp_dir() { return testutil::process_temp_dir("g4_test_model_quants"); }

std::vector<TensorSpec> written_specs(const ModelConfig& c) {
  std::vector<TensorSpec> out;
  for (TensorSpec& s : text_tensor_specs(c, true))
    if (s.required || s.role == TensorRole::RopeFreqs || s.layer >= 0) out.push_back(std::move(s));
  return out;
}

TensorSpec matrix(const std::string& name, int64_t ne0, int64_t ne1) {
  TensorSpec s;
  s.gguf_name = name;
  s.ne = {ne0, ne1};
  s.layer = 0;
  return s;
}

}  // namespace

TEST(TestModelQuantTypes, StorageTypesFollowLlamaQuantize) {
  auto type_of = [](const TensorSpec& s, GgmlType t) { return test_tensor_type(s, TestFormat::Gguf, t); };
  // Rows that fit the block keep the type.
  for (GgmlType t : kNewTypes) EXPECT_EQ(type_of(matrix("blk.0.ffn_down.weight", 512, 8), t), t) << ggml_type_name(t);
  // K-quant rows that are not a multiple of 256: Q4_K -> Q5_0, Q5_K -> Q5_1,
  // Q6_K -> Q8_0; rows not a multiple of 32 either: F16 (also for 32-blocks).
  const TensorSpec r96 = matrix("blk.0.attn_q.weight", 96, 8), r40 = matrix("blk.0.attn_q.weight", 40, 8);
  EXPECT_EQ(type_of(r96, GgmlType::Q4_K), GgmlType::Q5_0);
  EXPECT_EQ(type_of(r96, GgmlType::Q5_K), GgmlType::Q5_1);
  EXPECT_EQ(type_of(r96, GgmlType::Q6_K), GgmlType::Q8_0);
  EXPECT_EQ(type_of(r96, GgmlType::Q8_K), GgmlType::F16);
  for (GgmlType t : kNewTypes) EXPECT_EQ(type_of(r40, t), GgmlType::F16) << ggml_type_name(t);
  for (GgmlType t : {GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::MXFP4})
    EXPECT_EQ(type_of(r96, t), t) << ggml_type_name(t);
  // Tied embeddings as the output head: Q6_K at full-scale widths, Q8_0 when
  // the row is not a multiple of 256, for Q8_0/Q4_0 files, MXFP4 and Q8_K.
  for (const char* emb : {"token_embd.weight", "per_layer_token_embd.weight"}) {
    const TensorSpec full = matrix(emb, 1536, 64), tiny = matrix(emb, 64, 64);
    for (GgmlType t : {GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
      EXPECT_EQ(type_of(full, t), GgmlType::Q6_K) << emb << " " << ggml_type_name(t);
      EXPECT_EQ(type_of(tiny, t), GgmlType::Q8_0) << emb << " " << ggml_type_name(t);
    }
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::MXFP4, GgmlType::Q8_K})
      EXPECT_EQ(type_of(full, t), GgmlType::Q8_0) << emb << " " << ggml_type_name(t);
  }
  EXPECT_EQ(type_of(matrix("per_layer_model_proj.weight", 1536, 256), GgmlType::Q4_K), GgmlType::F32);
  EXPECT_EQ(type_of(matrix("blk.0.ffn_gate_inp.weight", 512, 8), GgmlType::Q4_K), GgmlType::F32);
}

class TestModelQuantTypesFile : public ::testing::TestWithParam<std::tuple<TestArch, GgmlType>> {};

TEST_P(TestModelQuantTypesFile, BytesAreTheReferenceQuantizersAndTheTwinMatches) {
  const auto [arch, type] = GetParam();
  const std::string tag = std::string(test_arch_name(arch)) + "-" + ggml_type_name(type);
  TestModelOptions o;
  o.arch = arch;
  o.type = type;
  o.seed = 31;
  o.threads = 2;
  o.out = (temp_dir() / (tag + ".gguf")).string();
  write_test_model(o);
  o.dequantized = true;
  o.out = (temp_dir() / (tag + "-twin.gguf")).string();
  write_test_model(o);
  const Checkpoint q = Checkpoint::open((temp_dir() / (tag + ".gguf")).string());
  const Checkpoint d = Checkpoint::open((temp_dir() / (tag + "-twin.gguf")).string());
  (void)ModelWeights::bind(q);  // every type the file holds is computable

  const ModelConfig c = test_model_config(arch, TestScale::Tiny, 1024);
  int of_type = 0;
  for (const TensorSpec& s : written_specs(c)) {
    SCOPED_TRACE(s.gguf_name);
    const TensorView& t = q.require(s.gguf_name);
    ASSERT_EQ(t.type, test_tensor_type(s, TestFormat::Gguf, type));
    of_type += t.type == type;
    if (s.role != TensorRole::RopeFreqs && ggml_type_info(t.type).block_size > 1) {
      // The stored bytes: the reference quantizer on the generated values.
      const size_t n = static_cast<size_t>(t.nelements());
      std::vector<float> vals(n);
      generate_test_values(test_tensor_key(31, s), test_init_for(s, c), 0, n, vals.data());
      std::vector<uint8_t> want(ggml_row_bytes(t.type, t.ne[0]) * (n / static_cast<size_t>(t.ne[0])));
      kernels::quantize_rows(t.type, vals.data(), want.data(), static_cast<int64_t>(n) / t.ne[0], t.ne[0]);
      ASSERT_EQ(t.nbytes, want.size());
      ASSERT_EQ(0, std::memcmp(t.data, want.data(), want.size()));
    }
    // The twin: the same values in F32.
    const TensorView& u = d.require(s.gguf_name);
    ASSERT_EQ(u.type, GgmlType::F32);
    const std::vector<float> a = tensor_to_f32(t), b = tensor_to_f32(u);
    ASSERT_EQ(a.size(), b.size());
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4));
  }
  // 31b's FFN down and full-layer attention output rows are 256 wide: real
  // K-quant tensors even in the tiny model; the 32-element types cover nearly
  // every matrix.
  if (ggml_type_info(type).block_size == 32 || arch == TestArch::D31B) {
    EXPECT_GT(of_type, 10);
  }
}

INSTANTIATE_TEST_SUITE_P(Types, TestModelQuantTypesFile,
                         ::testing::Combine(::testing::Values(TestArch::D31B, TestArch::A26B),
                                            ::testing::ValuesIn(kNewTypes)),
                         [](const auto& info) {
                           std::string n = std::string(test_arch_name(std::get<0>(info.param))) + "_" +
                                           ggml_type_name(std::get<1>(info.param));
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });
