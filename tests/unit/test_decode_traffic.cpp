// decode_weight_bytes(): the bytes of weights one decode token reads, checked
// against the tensor list of tiny generated models (E2B: tied head, PLE,
// KV-shared layers with dead K/V; 26B-A4B: MoE experts).
#include <gtest/gtest.h>

#include <string>

#include "core/dtype.h"
#include "model/checkpoint.h"
#include "model/decode_traffic.h"
#include "test_util.h"
#include "tools/test_model.h"

namespace g4 {
namespace {

using testutil::TempDir;

Checkpoint make_model(const TempDir& dir, TestArch arch, GgmlType type) {
  TestModelOptions o;
  o.arch = arch;
  o.scale = TestScale::Tiny;
  o.format = TestFormat::Gguf;
  o.type = type;
  o.seed = 1;
  o.out = dir / "model.gguf";
  write_test_model(o);
  return Checkpoint::open(o.out);
}

bool is_expert(const std::string& name) {
  return name.size() > 12 && name.compare(name.size() - 12, 12, "_exps.weight") == 0;
}

TEST(DecodeTraffic, E2bTiedHeadEmbeddingRowsAndDeadKv) {
  TempDir dir("g4_traffic");
  const Checkpoint ck = make_model(dir, TestArch::E2B, GgmlType::Q8_0);
  const ModelConfig& c = ck.config();
  ASSERT_TRUE(c.tie_embeddings);
  ASSERT_EQ(ck.tensor("output.weight"), nullptr);
  ASSERT_GT(c.ple_dim, 0);

  const TensorView& emb = ck.require("token_embd.weight");
  const TensorView& ple = ck.require("per_layer_token_embd.weight");
  // One row of each table, in its stored type (Q8_0: 34 bytes per 32 values).
  ASSERT_EQ(emb.type, GgmlType::Q8_0);
  const uint64_t emb_row = static_cast<uint64_t>(ggml_row_bytes(emb.type, emb.ne[0]));
  const uint64_t ple_row = static_cast<uint64_t>(ggml_row_bytes(ple.type, ple.ne[0]));
  EXPECT_EQ(emb_row, static_cast<uint64_t>(c.hidden / 32 * 34));

  uint64_t all = 0, dead = 0;
  for (const TensorView& t : ck.tensors()) {
    all += t.nbytes;
    if (ck.is_dead(t.name)) dead += t.nbytes;
  }
  ASSERT_GT(dead, 0u) << "the tiny E2B model should carry dead K/V tensors on its KV-shared layers";

  const DecodeWeightBytes b = decode_weight_bytes(ck);
  EXPECT_EQ(b.embedding_rows, emb_row + ple_row);
  EXPECT_EQ(b.output_head, static_cast<uint64_t>(emb.nbytes));  // tied head: the whole table
  EXPECT_EQ(b.experts, 0u);
  // Everything else is read in full, the dead tensors not at all.
  EXPECT_EQ(b.other, all - dead - emb.nbytes - ple.nbytes);
  EXPECT_EQ(b.total(), all - dead - ple.nbytes + emb_row + ple_row);
}

TEST(DecodeTraffic, MoeExpertsCountTopKShare) {
  TempDir dir("g4_traffic");
  const Checkpoint ck = make_model(dir, TestArch::A26B, GgmlType::F16);
  const ModelConfig& c = ck.config();
  ASSERT_TRUE(c.moe);
  ASSERT_GT(c.n_experts, c.n_experts_used);

  uint64_t experts_full = 0, experts_routed = 0, rest = 0;
  for (const TensorView& t : ck.tensors()) {
    if (ck.is_dead(t.name) || t.name == "token_embd.weight") continue;
    if (is_expert(t.name)) {
      experts_full += t.nbytes;
      experts_routed += t.nbytes * static_cast<uint64_t>(c.n_experts_used) / static_cast<uint64_t>(c.n_experts);
    } else {
      rest += t.nbytes;
    }
  }
  ASSERT_GT(experts_full, 0u);

  const DecodeWeightBytes b = decode_weight_bytes(ck);
  EXPECT_EQ(b.experts, experts_routed);
  EXPECT_LT(b.experts, experts_full);
  // F16 experts: k/E of the bytes exactly (every expert slice is whole).
  EXPECT_EQ(b.experts * static_cast<uint64_t>(c.n_experts), experts_full * static_cast<uint64_t>(c.n_experts_used));
  const TensorView& emb = ck.require("token_embd.weight");
  EXPECT_EQ(b.embedding_rows, static_cast<uint64_t>(emb.nbytes / emb.ne[1]));
  EXPECT_EQ(b.output_head, static_cast<uint64_t>(emb.nbytes));
  EXPECT_EQ(b.other, rest);
}

}  // namespace
}  // namespace g4
