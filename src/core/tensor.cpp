#include "core/tensor.h"

namespace g4 {

std::string TensorView::shape_string() const {
  std::string s = "{";
  for (size_t i = 0; i < ne.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(ne[i]);
  }
  return s + "}";
}

}  // namespace g4
