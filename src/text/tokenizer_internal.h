// Knobs of the tokenizer implementation that tests reach into. Not for
// production code.
#pragma once
#include <atomic>
#include <cstddef>

namespace g4::detail {

// BPE segments with more symbols than this use the heap + linked-list merge
// (O(n log n)); shorter ones use a direct scan (O(n^2), faster when tiny).
// Tests set it to 0 / a huge value to check both paths give the same ids.
extern std::atomic<size_t> bpe_heap_threshold;

// When false, BPE runs on whole newline-free chunks instead of on the
// independent segments between characters that no merge can join.
// Tests flip it to check that splitting never changes the result.
extern std::atomic<bool> bpe_split_segments;

}  // namespace g4::detail
