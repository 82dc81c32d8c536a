#include "model/decode_traffic.h"

#include <string_view>

#include "core/error.h"

namespace g4 {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Bytes of one row (ne[0] elements) of a 2-D table; block-quantized rows are a
// whole number of blocks, so nbytes divides evenly.
uint64_t row_bytes(const TensorView& t) {
  const int64_t rows = t.nrows();
  if (rows <= 0) fail("tensor '", t.name, "' has no rows");
  return static_cast<uint64_t>(t.nbytes) / static_cast<uint64_t>(rows);
}

}  // namespace

DecodeWeightBytes decode_weight_bytes(const Checkpoint& ck) {
  const ModelConfig& c = ck.config();
  DecodeWeightBytes b;
  for (const TensorView& t : ck.tensors()) {
    if (ck.is_dead(t.name)) continue;
    const uint64_t n = static_cast<uint64_t>(t.nbytes);
    if (t.name == "token_embd.weight" || t.name == "per_layer_token_embd.weight") {
      b.embedding_rows += row_bytes(t);
    } else if (t.name == "output.weight") {
      b.output_head += n;
    } else if (ends_with(t.name, "_exps.weight")) {
      if (c.n_experts <= 0) fail("tensor '", t.name, "' is an expert tensor but the model has no experts");
      // Rounded down per tensor: the error is below one byte per expert tensor.
      b.experts += n * static_cast<uint64_t>(c.n_experts_used) / static_cast<uint64_t>(c.n_experts);
    } else {
      b.other += n;
    }
  }
  if (!ck.tensor("output.weight")) b.output_head += static_cast<uint64_t>(ck.require("token_embd.weight").nbytes);
  return b;
}

}  // namespace g4
