// Checkpoint: opening the golden HF folders, GGUF files converted from them,
// and broken copies (missing / reshaped / unexpected / mistyped tensors).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "test_util.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/tensor_specs.h"

namespace fs = std::filesystem;
using namespace g4;
using namespace g4::testutil;

namespace {

// ---- HF copies with edits --------------------------------------------------

struct StTensor {
  std::string name;
  GgmlType type;
  std::vector<int64_t> hf_shape;
  std::vector<uint8_t> data;
};

std::vector<StTensor> read_tensors(const fs::path& file) {
  std::vector<StTensor> out;
  SafetensorsFile f = SafetensorsFile::open(file.string());
  for (const TensorView& t : f.tensors())
    out.push_back({t.name, t.type, std::vector<int64_t>(t.ne.rbegin(), t.ne.rend()),
                   std::vector<uint8_t>(t.data, t.data + t.nbytes)});
  return out;
}

void write_tensors(const fs::path& file, const std::vector<StTensor>& ts) {
  SafetensorsWriter w(file.string());
  for (const auto& t : ts) w.add_tensor_info(t.name, t.type, t.hf_shape);
  w.write_header();
  for (const auto& t : ts) w.write_tensor_data(t.name, t.data.data(), t.data.size());
  w.finish();
}

// Copies a golden family into `dst` (config.json + edited model.safetensors).
void copy_golden_text(const std::string& family, const fs::path& dst,
                 const std::function<void(std::vector<StTensor>&)>& edit) {
  fs::create_directories(dst);
  fs::copy_file(golden_text(family) / "config.json", dst / "config.json", fs::copy_options::overwrite_existing);
  auto ts = read_tensors(golden_text(family) / "model.safetensors");
  edit(ts);
  write_tensors(dst / "model.safetensors", ts);
}

StTensor* find(std::vector<StTensor>& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.name == name) return &t;
  ADD_FAILURE() << "no tensor " << name;
  return nullptr;
}

StTensor zeros(const std::string& name, std::vector<int64_t> hf_shape, GgmlType type = GgmlType::F32) {
  int64_t n = 1;
  for (int64_t d : hf_shape) n *= d;
  const size_t elem = type == GgmlType::F32 ? 4 : type == GgmlType::I64 ? 8 : 2;
  return {name, type, std::move(hf_shape), std::vector<uint8_t>(static_cast<size_t>(n) * elem, 0)};
}

// ---- GGUF files converted from a checkpoint --------------------------------

struct GgufEdit {
  std::function<GgmlType(const std::string&, GgmlType)> retype;  // quantised types get zero data
  std::set<std::string> drop;
  std::vector<std::pair<std::string, std::vector<int64_t>>> extra;  // F32 zeros
  bool split_moe = false;
  bool fused_too = false;  // with split_moe: keep the fused tensor as well
};

size_t tensor_bytes(GgmlType t, const std::vector<int64_t>& ne) {
  int64_t rows = 1;
  for (size_t i = 1; i < ne.size(); ++i) rows *= ne[i];
  return ggml_row_bytes(t, ne.empty() ? 1 : ne[0]) * static_cast<size_t>(rows);
}

void write_gguf_from(const Checkpoint& src, const std::string& path, const GgufEdit& e = {}) {
  const ModelConfig& c = src.config();
  struct Item {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    std::vector<uint8_t> data;
  };
  std::vector<Item> items;
  auto add = [&](std::string name, GgmlType type, std::vector<int64_t> ne, std::vector<uint8_t> data) {
    if (e.drop.count(name)) return;
    if (e.retype) {
      const GgmlType t2 = e.retype(name, type);
      if (t2 != type) {
        type = t2;
        data.assign(tensor_bytes(type, ne), 0);
      }
    }
    items.push_back({std::move(name), type, std::move(ne), std::move(data)});
  };
  const auto rf = rope_freqs_values(c);
  std::vector<uint8_t> rfb(rf.size() * 4);
  std::memcpy(rfb.data(), rf.data(), rfb.size());
  add("rope_freqs.weight", GgmlType::F32, {static_cast<int64_t>(rf.size())}, rfb);
  for (const TensorView& t : src.tensors()) {
    std::vector<uint8_t> bytes(t.data, t.data + t.nbytes);
    if (e.split_moe && t.name.find("ffn_gate_up_exps") != std::string::npos) {
      const int64_t H = t.ne[0], F2 = t.ne[1], E = t.ne[2], F = F2 / 2;
      const std::string base = t.name.substr(0, t.name.find("ffn_gate_up_exps"));
      std::vector<uint8_t> gate, up;
      for (int64_t x = 0; x < E; ++x) {
        const uint8_t* p = t.data + x * F2 * H * 4;
        gate.insert(gate.end(), p, p + F * H * 4);
        up.insert(up.end(), p + F * H * 4, p + F2 * H * 4);
      }
      add(base + "ffn_gate_exps.weight", t.type, {H, F, E}, gate);
      add(base + "ffn_up_exps.weight", t.type, {H, F, E}, up);
      if (!e.fused_too) continue;
    }
    add(t.name, t.type, t.ne, bytes);
  }
  for (const auto& [name, ne] : e.extra) add(name, GgmlType::F32, ne, std::vector<uint8_t>(tensor_bytes(GgmlType::F32, ne), 0));

  GgufWriter w(path);
  write_gguf_config(c, w);
  for (const Item& it : items) w.add_tensor_info(it.name, it.type, it.ne);
  w.write_header();
  for (const Item& it : items) w.write_tensor_data(it.name, it.data.data(), it.data.size());
  w.finish();
}

}  // namespace

// ---------------------------------------------------------------------------
// Golden HF folders

TEST(CheckpointHf, OpensTheGoldenFolders) {
  for (const char* fam : {"e2b_like", "a4b_like", "dense_like"}) {
    SCOPED_TRACE(fam);
    const fs::path dir = golden_text(fam);
    const Checkpoint ck = Checkpoint::open(dir.string());
    EXPECT_EQ(ck.format(), CheckpointFormat::HfSafetensors);
    EXPECT_EQ(ck.gguf(), nullptr);
    EXPECT_EQ(ck.path(), dir.string());
    EXPECT_EQ(ck.file_bytes(), fs::file_size(dir / "model.safetensors"));
    EXPECT_TRUE(ck.notes().empty());
    const ModelConfig& c = ck.config();
    const ModelConfig ref = config_from_hf_file((dir / "config.json").string());
    EXPECT_EQ(c.n_layers, ref.n_layers);
    EXPECT_EQ(c.layers.size(), ref.layers.size());

    // Every HF tensor is a text tensor here; all required specs are present.
    const SafetensorsFile raw = SafetensorsFile::open((dir / "model.safetensors").string());
    EXPECT_EQ(ck.tensors().size(), raw.tensors().size());
    for (const TensorSpec& s : text_tensor_specs(c))
      if (s.required) {
        EXPECT_NE(ck.tensor(s.gguf_name), nullptr) << s.gguf_name;
      }

    // Renamed, reversed shapes, same bytes, no copies.
    for (const TensorView& t : raw.tensors()) {
      const auto g = hf_to_gguf_name(t.name);
      ASSERT_TRUE(g.has_value()) << t.name;
      const TensorView& v = ck.require(*g);
      EXPECT_EQ(v.ne, t.ne);
      EXPECT_EQ(v.type, GgmlType::F32);
      ASSERT_EQ(v.nbytes, t.nbytes);
      EXPECT_EQ(std::memcmp(v.data, t.data, t.nbytes), 0) << t.name;
      ASSERT_NE(v.file, nullptr);
      EXPECT_GE(v.data, v.file->data());
      EXPECT_LE(v.data + v.nbytes, v.file->data() + v.file->size());
    }
  }
}

TEST(CheckpointHf, E2bLikeShapes) {
  const Checkpoint ck = Checkpoint::open(golden_text("e2b_like").string());
  EXPECT_EQ(ck.require("blk.3.attn_q.weight").ne, (std::vector<int64_t>{64, 128}));
  EXPECT_EQ(ck.require("blk.7.ffn_gate.weight").ne, (std::vector<int64_t>{64, 192}));
  EXPECT_EQ(ck.require("blk.7.layer_output_scale.weight").ne, (std::vector<int64_t>{1}));
  EXPECT_EQ(ck.require("per_layer_token_embd.weight").ne, (std::vector<int64_t>{128, 512}));
  EXPECT_EQ(ck.tensor("blk.5.attn_k.weight"), nullptr);  // KV-shared: not stored
  EXPECT_EQ(ck.tensor("rope_freqs.weight"), nullptr);    // GGUF-only
  expect_error([&] { ck.require("blk.5.attn_k.weight"); }, {"blk.5.attn_k.weight"});
}

TEST(CheckpointHf, OtherEntryPaths) {
  const fs::path dir = golden_text("a4b_like");
  const Checkpoint a = Checkpoint::open((dir / "config.json").string());
  const Checkpoint b = Checkpoint::open((dir / "model.safetensors").string());
  EXPECT_EQ(a.tensors().size(), b.tensors().size());
  EXPECT_TRUE(a.config().moe);
  EXPECT_EQ(b.require("blk.0.ffn_gate_up_exps.weight").ne, (std::vector<int64_t>{64, 48, 8}));
  EXPECT_EQ(b.require("blk.0.ffn_down_exps.weight").ne, (std::vector<int64_t>{24, 64, 8}));
  EXPECT_EQ(b.tensor("blk.2.attn_v.weight"), nullptr);
}

TEST(CheckpointHf, VisionModelKeepsOnlyTextTensors) {
  const Checkpoint ck = Checkpoint::open((shared_dir() / "golden/vision/vision_like").string());
  EXPECT_TRUE(ck.config().has_vision);
  EXPECT_EQ(ck.config().architecture, "Gemma4ForConditionalGeneration");
  ASSERT_EQ(ck.notes().size(), 1u);
  EXPECT_NE(ck.notes()[0].find("outside the text decoder"), std::string::npos);
  std::set<std::string> spec_names;
  for (const TensorSpec& s : text_tensor_specs(ck.config())) spec_names.insert(s.gguf_name);
  for (const TensorView& t : ck.tensors()) EXPECT_TRUE(spec_names.count(t.name)) << t.name;
  EXPECT_NE(ck.tensor("blk.1.attn_q.weight"), nullptr);
}

TEST(CheckpointHf, MissingTensorIsNamed) {
  TempDir dir("g4_ck");
  copy_golden_text("e2b_like", dir.path(), [](auto& ts) {
    ts.erase(std::remove_if(ts.begin(), ts.end(),
                            [](const StTensor& t) { return t.name == "model.layers.1.self_attn.q_proj.weight"; }),
             ts.end());
  });
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {"'blk.1.attn_q.weight'", "model.layers.1.self_attn.q_proj.weight", "missing"});
}

TEST(CheckpointHf, ReshapedTensorIsNamed) {
  TempDir dir("g4_ck");
  copy_golden_text("e2b_like", dir.path(), [](auto& ts) {
    StTensor* t = find(ts, "model.layers.3.self_attn.q_proj.weight");
    *t = zeros(t->name, {96, 64});
  });
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {"tensor 'blk.3.attn_q.weight' has shape {64, 96}, expected {64, 128} from the config"});
}

TEST(CheckpointHf, UnexpectedTensors) {
  TempDir dir("g4_ck");
  // Unknown decoder tensor: error.
  copy_golden_text("dense_like", dir.path() / "a",
              [](auto& ts) { ts.push_back(zeros("model.layers.0.self_attn.extra.weight", {4})); });
  expect_error([&] { Checkpoint::open((dir.path() / "a").string()); }, {"model.layers.0.self_attn.extra.weight"});
  // A layer the config does not have: error.
  copy_golden_text("dense_like", dir.path() / "b",
              [](auto& ts) { ts.push_back(zeros("model.layers.6.input_layernorm.weight", {64})); });
  expect_error([&] { Checkpoint::open((dir.path() / "b").string()); }, {"blk.6.attn_norm.weight", "not part"});
  // v_proj on a K=V full layer: error.
  copy_golden_text("dense_like", dir.path() / "c",
              [](auto& ts) { ts.push_back(zeros("model.layers.2.self_attn.v_proj.weight", {64, 64})); });
  expect_error([&] { Checkpoint::open((dir.path() / "c").string()); }, {"blk.2.attn_v.weight", "K=V"});
  // Outside the text decoder (tied lm_head, other modules): ignored with a note.
  copy_golden_text("dense_like", dir.path() / "d", [](auto& ts) {
    ts.push_back(zeros("lm_head.weight", {512, 64}));
    ts.push_back(zeros("model.embed_audio.weight", {4}));
  });
  const Checkpoint ck = Checkpoint::open((dir.path() / "d").string());
  ASSERT_EQ(ck.notes().size(), 1u);
  EXPECT_NE(ck.notes()[0].find("2 tensors"), std::string::npos) << ck.notes()[0];
  EXPECT_EQ(ck.tensor("output.weight"), nullptr);
}

TEST(CheckpointHf, DtypesAndDeadTensors) {
  TempDir dir("g4_ck");
  // BF16 / F16 tensors are fine; the reader keeps their type.
  copy_golden_text("e2b_like", dir.path() / "a", [](auto& ts) {
    *find(ts, "model.layers.0.input_layernorm.weight") = zeros("model.layers.0.input_layernorm.weight", {64}, GgmlType::BF16);
    *find(ts, "model.layers.0.mlp.up_proj.weight") = zeros("model.layers.0.mlp.up_proj.weight", {96, 64}, GgmlType::F16);
    // Dead K/V of a KV-shared layer, as released checkpoints carry them.
    ts.push_back(zeros("model.layers.5.self_attn.k_proj.weight", {32, 64}));
    ts.push_back(zeros("model.layers.5.self_attn.v_proj.weight", {32, 64}));
    ts.push_back(zeros("model.layers.5.self_attn.k_norm.weight", {32}));
  });
  const Checkpoint ck = Checkpoint::open((dir.path() / "a").string());
  EXPECT_EQ(ck.require("blk.0.attn_norm.weight").type, GgmlType::BF16);
  EXPECT_EQ(ck.require("blk.0.ffn_up.weight").type, GgmlType::F16);
  EXPECT_TRUE(ck.is_dead("blk.5.attn_k.weight"));
  EXPECT_TRUE(ck.is_dead("blk.5.attn_k_norm.weight"));
  EXPECT_FALSE(ck.is_dead("blk.3.attn_k.weight"));
  // Dead tensors with the wrong shape still mean a config mismatch.
  copy_golden_text("e2b_like", dir.path() / "b",
              [](auto& ts) { ts.push_back(zeros("model.layers.5.self_attn.k_proj.weight", {64, 64})); });
  expect_error([&] { Checkpoint::open((dir.path() / "b").string()); }, {"blk.5.attn_k.weight", "{64, 64}"});
  // A decoder tensor of a dtype the engine cannot use.
  copy_golden_text("e2b_like", dir.path() / "c",
              [](auto& ts) { *find(ts, "model.layers.2.layer_scalar") = zeros("model.layers.2.layer_scalar", {1}, GgmlType::I64); });
  expect_error([&] { Checkpoint::open((dir.path() / "c").string()); }, {"model.layers.2.layer_scalar", "I64"});
}

TEST(CheckpointHf, RequireTypes) {
  const Checkpoint ck = Checkpoint::open(golden_text("dense_like").string());
  const GgmlType f32[] = {GgmlType::F32};
  EXPECT_NO_THROW(ck.require_types(f32));
  const GgmlType halfs[] = {GgmlType::F16, GgmlType::BF16};
  expect_error([&] { ck.require_types(halfs); },
               {"has type F32, which this engine cannot compute yet (supported: F16, BF16)", "tensor '"});
}

TEST(Checkpoint, NotAModel) {
  TempDir dir("g4_ck");
  expect_error([&] { Checkpoint::open(dir / "nope"); }, {"does not exist"});
  std::ofstream(dir / "notes.txt") << "hello world, not a model";
  expect_error([&] { Checkpoint::open(dir / "notes.txt"); }, {"notes.txt", "neither a GGUF"});
  fs::create_directories(dir.path() / "empty");
  expect_error([&] { Checkpoint::open((dir.path() / "empty").string()); }, {"config.json"});
  // Folder with config.json but no weights.
  fs::create_directories(dir.path() / "cfg_only");
  fs::copy_file(golden_text("dense_like") / "config.json", dir.path() / "cfg_only" / "config.json");
  expect_error([&] { Checkpoint::open((dir.path() / "cfg_only").string()); }, {"model.safetensors"});
}

// ---------------------------------------------------------------------------
// GGUF

TEST(CheckpointGguf, GoldenConvertedToGguf) {
  TempDir dir("g4_ck");
  for (const char* fam : {"e2b_like", "a4b_like", "dense_like"}) {
    SCOPED_TRACE(fam);
    const Checkpoint hf = Checkpoint::open(golden_text(fam).string());
    const std::string p = dir / (std::string(fam) + ".bin");  // detected by magic, not extension
    write_gguf_from(hf, p);
    const Checkpoint g = Checkpoint::open(p);
    EXPECT_EQ(g.format(), CheckpointFormat::Gguf);
    ASSERT_NE(g.gguf(), nullptr);
    EXPECT_EQ(g.file_bytes(), fs::file_size(p));
    const ModelConfig &a = hf.config(), &b = g.config();
    EXPECT_EQ(a.k_eq_v, b.k_eq_v);
    EXPECT_EQ(a.moe, b.moe);
    EXPECT_EQ(a.double_wide_mlp, b.double_wide_mlp);
    EXPECT_FLOAT_EQ(a.partial_rotary_factor_full, b.partial_rotary_factor_full);
    for (int i = 0; i < a.n_layers; ++i) {
      EXPECT_EQ(a.layers[i].kv_source, b.layers[i].kv_source);
      EXPECT_EQ(a.layers[i].ffn_dim, b.layers[i].ffn_dim);
      EXPECT_EQ(a.layers[i].n_kv_heads, b.layers[i].n_kv_heads);
      EXPECT_EQ(a.layers[i].rope_rotated_dims, b.layers[i].rope_rotated_dims);
    }
    EXPECT_EQ(g.tensors().size(), hf.tensors().size() + 1);  // + rope_freqs
    for (const TensorView& t : hf.tensors()) {
      const TensorView& u = g.require(t.name);
      EXPECT_EQ(u.ne, t.ne);
      ASSERT_EQ(u.nbytes, t.nbytes);
      EXPECT_EQ(std::memcmp(u.data, t.data, t.nbytes), 0) << t.name;
    }
    const GgmlType f32[] = {GgmlType::F32};
    EXPECT_NO_THROW(g.require_types(f32));
  }
}

TEST(CheckpointGguf, QuantizedTypes) {
  TempDir dir("g4_ck");
  const Checkpoint hf = Checkpoint::open(golden_text("e2b_like").string());
  GgufEdit e;
  e.retype = [](const std::string& n, GgmlType t) {
    return n.find(".attn_q.weight") != std::string::npos ? GgmlType::Q8_0 : t;
  };
  write_gguf_from(hf, dir / "q.gguf", e);
  const Checkpoint g = Checkpoint::open(dir / "q.gguf");
  EXPECT_EQ(g.require("blk.0.attn_q.weight").type, GgmlType::Q8_0);
  const GgmlType floats[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16};
  expect_error([&] { g.require_types(floats); },
               {"tensor 'blk.0.attn_q.weight' has type Q8_0, which this engine cannot compute yet "
                "(supported: F32, F16, BF16)",
                "7 more"});
  const GgmlType with_q8[] = {GgmlType::F32, GgmlType::Q8_0};
  EXPECT_NO_THROW(g.require_types(with_q8));

  // Norms must stay float.
  GgufEdit n;
  n.retype = [](const std::string& name, GgmlType t) {
    return name == "blk.1.attn_norm.weight" ? GgmlType::Q8_0 : t;
  };
  write_gguf_from(hf, dir / "n.gguf", n);
  expect_error([&] { Checkpoint::open(dir / "n.gguf"); }, {"blk.1.attn_norm.weight", "Q8_0", "F32, F16 or BF16"});

  // rope_freqs must be F32.
  GgufEdit r;
  r.retype = [](const std::string& name, GgmlType t) { return name == "rope_freqs.weight" ? GgmlType::F16 : t; };
  write_gguf_from(hf, dir / "r.gguf", r);
  expect_error([&] { Checkpoint::open(dir / "r.gguf"); }, {"rope_freqs", "F16"});
}

TEST(CheckpointGguf, DeadTensorsAreNotComputed) {
  TempDir dir("g4_ck");
  const Checkpoint hf = Checkpoint::open(golden_text("e2b_like").string());
  GgufEdit e;
  e.extra = {{"blk.6.attn_k.weight", {64, 32}}, {"blk.6.attn_v.weight", {64, 32}}, {"blk.6.attn_k_norm.weight", {32}}};
  write_gguf_from(hf, dir / "d.gguf", e);
  // Requantise only the dead tensors: still computable with F32 only.
  GgufEdit q = e;
  q.retype = [](const std::string& n, GgmlType t) {
    return n == "blk.6.attn_k.weight" || n == "blk.6.attn_v.weight" ? GgmlType::Q8_0 : t;
  };
  write_gguf_from(hf, dir / "dq.gguf", q);
  const Checkpoint g = Checkpoint::open(dir / "dq.gguf");
  EXPECT_TRUE(g.is_dead("blk.6.attn_k.weight"));
  const GgmlType f32[] = {GgmlType::F32};
  EXPECT_NO_THROW(g.require_types(f32));
}

TEST(CheckpointGguf, SplitMoeExperts) {
  TempDir dir("g4_ck");
  const Checkpoint hf = Checkpoint::open(golden_text("a4b_like").string());
  GgufEdit e;
  e.split_moe = true;
  write_gguf_from(hf, dir / "split.gguf", e);
  const Checkpoint g = Checkpoint::open(dir / "split.gguf");
  EXPECT_EQ(g.tensor("blk.0.ffn_gate_up_exps.weight"), nullptr);
  EXPECT_EQ(g.require("blk.0.ffn_gate_exps.weight").ne, (std::vector<int64_t>{64, 24, 8}));
  EXPECT_EQ(g.require("blk.5.ffn_up_exps.weight").ne, (std::vector<int64_t>{64, 24, 8}));
  // Up rows of expert 1 = rows 24..47 of the fused expert 1.
  const TensorView& fused = hf.require("blk.0.ffn_gate_up_exps.weight");
  const TensorView& up = g.require("blk.0.ffn_up_exps.weight");
  EXPECT_EQ(std::memcmp(up.data + 1 * 24 * 64 * 4, fused.data + (1 * 48 + 24) * 64 * 4, 24 * 64 * 4), 0);

  GgufEdit half = e;
  half.drop = {"blk.3.ffn_up_exps.weight"};
  write_gguf_from(hf, dir / "half.gguf", half);
  expect_error([&] { Checkpoint::open(dir / "half.gguf"); }, {"blk.3.ffn_up_exps.weight", "missing"});

  GgufEdit both = e;
  both.fused_too = true;
  write_gguf_from(hf, dir / "both.gguf", both);
  expect_error([&] { Checkpoint::open(dir / "both.gguf"); }, {"ffn_gate_up_exps", "one form"});
}

TEST(CheckpointGguf, MissingUnknownAndForeignTensors) {
  TempDir dir("g4_ck");
  const Checkpoint hf = Checkpoint::open(golden_text("dense_like").string());
  GgufEdit m;
  m.drop = {"blk.4.ffn_down.weight"};
  write_gguf_from(hf, dir / "m.gguf", m);
  expect_error([&] { Checkpoint::open(dir / "m.gguf"); }, {"'blk.4.ffn_down.weight'", "missing"});

  GgufEdit u;
  u.extra = {{"blk.0.attn_q.scale", {1}}};
  write_gguf_from(hf, dir / "u.gguf", u);
  expect_error([&] { Checkpoint::open(dir / "u.gguf"); }, {"blk.0.attn_q.scale", "not part"});

  GgufEdit p;
  p.extra = {{"per_layer_proj_norm.weight", {16}}};
  write_gguf_from(hf, dir / "p.gguf", p);
  expect_error([&] { Checkpoint::open(dir / "p.gguf"); }, {"per_layer_proj_norm.weight"});

  GgufEdit v;
  v.extra = {{"v.patch_embd.weight", {48, 32}}, {"mm.input_projection.weight", {32, 64}}};
  write_gguf_from(hf, dir / "v.gguf", v);
  const Checkpoint g = Checkpoint::open(dir / "v.gguf");
  EXPECT_TRUE(g.config().has_vision);
  EXPECT_EQ(g.tensor("v.patch_embd.weight"), nullptr);
  ASSERT_EQ(g.notes().size(), 1u);
  EXPECT_NE(g.notes()[0].find("2 tensors"), std::string::npos);

  // An untied output head is required and used.
  GgufEdit o;
  o.extra = {{"output.weight", {64, 512}}};
  write_gguf_from(hf, dir / "o.gguf", o);
  const Checkpoint go = Checkpoint::open(dir / "o.gguf");
  EXPECT_FALSE(go.config().tie_embeddings);
  EXPECT_NE(go.tensor("output.weight"), nullptr);
}
