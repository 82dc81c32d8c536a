// Gemma 4 tokenizer (see tokenizer.h and spec gemma4-io.md §1).
//
// Encoding, in the order the work happens:
//  1. With parse_special, control and user-defined pieces are cut out of the
//     text first (leftmost, longest match) and become single ids.
//  2. The remaining text is split into runs of '\n' and runs of other bytes.
//     A newline run that is a vocabulary piece is one token; otherwise it goes
//     through BPE like any other run.
//  3. Each character becomes a symbol: its single-character piece (' ' is
//     U+2581 '▁'), or "unknown" when the character has no piece or the bytes
//     are not valid UTF-8 (each invalid byte is then a symbol of its own).
//  4. Independent segments. At load we record every pair of characters that
//     sits side by side inside some merge result. Between two adjacent
//     symbols whose characters are not such a pair no merge can ever apply, so
//     BPE on the two sides is independent and gives the same ids as BPE on the
//     whole run. In Gemma's vocabulary almost every '▁' starts such a
//     boundary, so segments are about one word long.
//  5. BPE per segment: repeatedly merge the adjacent pair with the lowest
//     merge rank (leftmost on ties). Short segments use a direct scan; long
//     ones (a megabyte of CJK or of one repeated character) a 4-ary heap of
//     (rank, position) over a linked list with lazy invalidation, O(n log n).
//  6. Symbols that are unknown become <0xHH> byte tokens of their bytes.
#include "text/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"
#include "text/tokenizer_internal.h"
#include "text/utf8.h"

namespace g4 {

namespace detail {
std::atomic<size_t> bpe_heap_threshold{48};
std::atomic<bool> bpe_split_segments{true};
}  // namespace detail

namespace {

constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();
constexpr int32_t kDead = std::numeric_limits<int32_t>::min();
constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581 '▁'

inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Open-addressing hash map uint64 -> uint32 with linear probing; built once,
// then read-only (safe to share between threads).
class FlatMap {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{kEmpty, 0});
    mask_ = cap - 1;
    shift_ = 64 - static_cast<int>(__builtin_ctzll(cap));
    size_ = 0;
  }
  // Keeps the first value stored for a key; returns false if it was present.
  bool insert(uint64_t key, uint32_t value) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    for (size_t i = index(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == kEmpty) {
        slots_[i] = Slot{key, value};
        ++size_;
        return true;
      }
      if (slots_[i].key == key) return false;
    }
  }
  uint32_t get(uint64_t key, uint32_t missing = kNoRank) const {
    if (slots_.empty()) return missing;
    for (size_t i = index(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return s.value;
      if (s.key == kEmpty) return missing;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  struct Slot {
    uint64_t key;
    uint32_t value;
  };
  size_t index(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<size_t>(old.size(), 8));
    for (const Slot& s : old)
      if (s.key != kEmpty) insert(s.key, s.value);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t size_ = 0;
};

struct Merge {
  int32_t left, right, result;
};

// 4-ary min-heap of uint64 keys on a caller-owned vector.
class MinHeap {
 public:
  explicit MinHeap(std::vector<uint64_t>& v) : h_(v) { h_.clear(); }
  void append(uint64_t x) { h_.push_back(x); }  // then build()
  void build() {
    if (h_.size() < 2) return;
    for (size_t i = (h_.size() - 2) / 4 + 1; i-- > 0;) sift_down(i);
  }
  bool empty() const { return h_.empty(); }
  uint64_t top() const { return h_[0]; }
  void pop() {
    h_[0] = h_.back();
    h_.pop_back();
    if (!h_.empty()) sift_down(0);
  }
  void replace_top(uint64_t x) {
    h_[0] = x;
    sift_down(0);
  }
  void push(uint64_t x) {
    size_t i = h_.size();
    h_.push_back(x);
    while (i > 0) {
      size_t p = (i - 1) / 4;
      if (h_[p] <= x) break;
      h_[i] = h_[p];
      i = p;
    }
    h_[i] = x;
  }

 private:
  void sift_down(size_t i) {
    const size_t n = h_.size();
    const uint64_t x = h_[i];
    while (true) {
      size_t c = 4 * i + 1;
      if (c >= n) break;
      size_t best = c;
      const size_t last = std::min(c + 4, n);
      for (size_t k = c + 1; k < last; ++k)
        if (h_[k] < h_[best]) best = k;
      if (h_[best] >= x) break;
      h_[i] = h_[best];
      i = best;
    }
    h_[i] = x;
  }
  std::vector<uint64_t>& h_;
};

// Per-thread scratch buffers so encode() allocates little and stays const.
struct Scratch {
  std::vector<int32_t> seg;     // symbol ids of the current segment
  std::vector<uint32_t> ranks;  // direct path: rank of (seg[i], seg[i+1])
  std::vector<uint32_t> next, prev;
  std::vector<uint64_t> heap;
};

int parse_byte_piece(std::string_view p) {
  // "<0xHH>" (either case of hex digits)
  if (p.size() != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int h = hex(p[3]), l = hex(p[4]);
  if (h < 0 || l < 0) return -1;
  return h * 16 + l;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (true) {
    size_t j = s.find(from, i);
    if (j == std::string_view::npos) break;
    out.append(s.substr(i, j - i));
    out.append(to);
    i = j + from.size();
  }
  out.append(s.substr(i));
  return out;
}

}  // namespace

struct Tokenizer::Impl {
  std::vector<std::string> pieces;
  std::vector<TokenKind> kinds;
  std::vector<uint64_t> piece_slots;  // piece -> id: open addressing, (hash << 32 | id + 1)
  uint64_t piece_mask = 0;

  // Decoded text of every id (▁ -> ' ', byte tokens -> their byte).
  std::string text_pool;
  std::vector<uint32_t> text_off;  // n+1 offsets into text_pool

  // Encoding tables.
  std::array<int32_t, 128> ascii_id{};  // single-character piece per ASCII byte (' ' -> ▁)
  FlatMap cp_id;                        // code point -> single-character piece
  std::array<int32_t, 256> byte_id{};   // <0xHH>
  FlatMap pair_rank;                    // (left id, right id) -> merge rank
  std::vector<Merge> merges;            // by rank
  FlatMap glue;                         // (char id, char id) adjacent inside a merge result
  std::vector<uint8_t> glue_ascii;      // 128*128 bitmap of the same for ASCII bytes
  std::vector<int32_t> newline_run;     // newline_run[k] = id of k '\n' or -1
  bool byte_fallback = true;

  // Special-token matching (parse_special): candidates by first byte,
  // longest first.
  std::array<std::vector<int32_t>, 256> special_by_byte;

  int32_t bos = -1, eos = -1, pad = -1, unk = -1;
  std::vector<int32_t> eog;

  size_t skipped_merges = 0;

  // ---- construction -------------------------------------------------------
  void build(const std::vector<std::pair<std::string_view, std::string_view>>& merge_pairs);
  static uint32_t piece_hash(std::string_view p) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, folded
    for (unsigned char c : p) h = (h ^ c) * 0x100000001b3ull;
    return static_cast<uint32_t>(h ^ (h >> 32));
  }
  int32_t lookup(std::string_view p) const {
    if (piece_slots.empty()) return -1;
    const uint32_t h = piece_hash(p);
    for (uint64_t i = h & piece_mask;; i = (i + 1) & piece_mask) {
      const uint64_t slot = piece_slots[i];
      if (slot == 0) return -1;
      if (static_cast<uint32_t>(slot >> 32) == h) {
        const int32_t id = static_cast<int32_t>(static_cast<uint32_t>(slot)) - 1;
        if (pieces[id] == p) return id;
      }
    }
  }

  // ---- encoding -----------------------------------------------------------
  uint32_t rank_of(int32_t a, int32_t b) const {
    if ((a | b) < 0) return kNoRank;
    return pair_rank.get(pair_key(a, b));
  }
  bool glued(int32_t a, int32_t b) const {
    if ((a | b) < 0) return false;
    return glue.get(pair_key(a, b), 0) != 0;
  }
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void encode_run(std::string_view text, size_t begin, size_t end, std::vector<int32_t>& out,
                  Scratch& s) const;
  void bpe_segment(std::string_view text, Scratch& s, std::vector<int32_t>& out) const;
  void emit(std::string_view text, int32_t sym, std::vector<int32_t>& out) const;

  std::string_view text_of(int32_t id) const {
    return std::string_view(text_pool).substr(text_off[id], text_off[id + 1] - text_off[id]);
  }
  bool renders(int32_t id, bool render_special) const {
    switch (kinds[id]) {
      case TokenKind::Normal:
      case TokenKind::UserDefined:
      case TokenKind::Byte:
        return true;
      default:
        return render_special;
    }
  }
};

void Tokenizer::Impl::build(const std::vector<std::pair<std::string_view, std::string_view>>& merge_pairs) {
  const int32_t n = static_cast<int32_t>(pieces.size());
  if (kinds.size() != pieces.size()) fail("tokenizer: ", kinds.size(), " token types for ", n, " tokens");

  size_t cap = 16;
  while (cap < pieces.size() * 2) cap <<= 1;
  piece_slots.assign(cap, 0);
  piece_mask = cap - 1;
  for (int32_t id = 0; id < n; ++id) {
    if (pieces[id].empty() || lookup(pieces[id]) >= 0) continue;  // first id wins on duplicates
    const uint32_t h = piece_hash(pieces[id]);
    uint64_t i = h & piece_mask;
    while (piece_slots[i] != 0) i = (i + 1) & piece_mask;
    piece_slots[i] = (static_cast<uint64_t>(h) << 32) | static_cast<uint32_t>(id + 1);
  }

  // Byte tokens.
  byte_id.fill(-1);
  for (int32_t id = 0; id < n; ++id) {
    int b = parse_byte_piece(pieces[id]);
    if (b < 0) continue;
    if (kinds[id] == TokenKind::Normal) kinds[id] = TokenKind::Byte;
    if (kinds[id] == TokenKind::Byte && byte_id[b] < 0) byte_id[b] = id;
  }

  // Decoded text.
  text_pool.clear();
  text_off.assign(1, 0);
  text_off.reserve(pieces.size() + 1);
  for (int32_t id = 0; id < n; ++id) {
    const std::string& p = pieces[id];
    if (kinds[id] == TokenKind::Byte && parse_byte_piece(p) >= 0) {
      text_pool += static_cast<char>(parse_byte_piece(p));
    } else if (kinds[id] == TokenKind::Normal && p.find(kSpaceMark) != std::string::npos) {
      text_pool += replace_all(p, kSpaceMark, " ");
    } else {
      text_pool += p;
    }
    if (text_pool.size() > std::numeric_limits<uint32_t>::max()) fail("tokenizer: vocabulary text too large");
    text_off.push_back(static_cast<uint32_t>(text_pool.size()));
  }

  // Single-character pieces (only ordinary pieces take part in BPE).
  auto bpe_piece = [&](int32_t id) {
    return kinds[id] == TokenKind::Normal || kinds[id] == TokenKind::UserDefined ||
           kinds[id] == TokenKind::Unused;
  };
  ascii_id.fill(-1);
  cp_id = FlatMap();
  cp_id.reserve(32768);
  for (int32_t id = 0; id < n; ++id) {
    const std::string& p = pieces[id];
    if (p.empty() || p.size() > 4 || !bpe_piece(id)) continue;
    utf8::Scan r = utf8::scan(p, 0);
    if (r.status != utf8::Scan::Valid || r.len != p.size()) continue;
    if (r.cp < 128 && ascii_id[r.cp] < 0) ascii_id[r.cp] = id;
    cp_id.insert(r.cp, static_cast<uint32_t>(id));
  }
  // The normalizer turns ' ' into '▁'.
  ascii_id[' '] = static_cast<int32_t>(cp_id.get(0x2581, static_cast<uint32_t>(-1)));

  // Merges: rank = position in the list; the result a+b must be a piece.
  merges.clear();
  merges.reserve(merge_pairs.size());
  pair_rank = FlatMap();
  pair_rank.reserve(merge_pairs.size());
  skipped_merges = 0;
  std::string joined;
  for (const auto& [a, b] : merge_pairs) {
    int32_t ia = lookup(a), ib = lookup(b);
    joined.assign(a).append(b);
    int32_t ir = lookup(joined);
    if (ia < 0 || ib < 0 || ir < 0) {
      ++skipped_merges;
      continue;
    }
    uint32_t rank = static_cast<uint32_t>(merges.size());
    if (pair_rank.insert(pair_key(ia, ib), rank)) merges.push_back({ia, ib, ir});
  }

  // Glue: character pairs adjacent inside some merge result.
  glue = FlatMap();
  glue.reserve(65536);
  glue_ascii.assign(128 * 128, 0);
  std::vector<uint8_t> seen(pieces.size(), 0);
  for (const Merge& m : merges) {
    if (seen[m.result]) continue;
    seen[m.result] = 1;
    const std::string& p = pieces[m.result];
    int32_t prev = -1;
    for (size_t i = 0; i < p.size();) {
      utf8::Scan r = utf8::scan(p, i);
      int32_t cur = -1;
      if (r.status == utf8::Scan::Valid)
        cur = static_cast<int32_t>(cp_id.get(r.cp, static_cast<uint32_t>(-1)));
      if (prev >= 0 && cur >= 0) glue.insert(pair_key(prev, cur), 1);
      prev = cur;
      i += r.len;
    }
  }
  for (int a = 0; a < 128; ++a)
    for (int b = 0; b < 128; ++b) glue_ascii[a * 128 + b] = glued(ascii_id[a], ascii_id[b]) ? 1 : 0;

  // Whole newline runs (spec §1.1: a newline-only run that is a piece is one token).
  newline_run.assign(1, -1);
  for (std::string nl = "\n";; nl += '\n') {
    int32_t id = lookup(nl);
    if (id < 0 || !bpe_piece(id)) break;
    newline_run.push_back(id);
  }

  // Special tokens matched with parse_special.
  for (auto& v : special_by_byte) v.clear();
  for (int32_t id = 0; id < n; ++id) {
    TokenKind k = kinds[id];
    if (pieces[id].empty()) continue;
    if (k != TokenKind::Control && k != TokenKind::UserDefined && k != TokenKind::Unknown) continue;
    special_by_byte[static_cast<uint8_t>(pieces[id][0])].push_back(id);
  }
  for (auto& v : special_by_byte)
    std::stable_sort(v.begin(), v.end(),
                     [&](int32_t a, int32_t b) { return pieces[a].size() > pieces[b].size(); });

  // Special ids: keep the ones the loader set, else look the usual pieces up.
  if (bos < 0) bos = lookup("<bos>");
  if (eos < 0) eos = lookup("<eos>");
  if (pad < 0) pad = lookup("<pad>");
  if (unk < 0) unk = lookup("<unk>");
  auto check = [&](int32_t& id) {
    if (id >= n) id = -1;
  };
  check(bos), check(eos), check(pad), check(unk);
  if (eos >= 0) eog.push_back(eos);
  for (std::string_view p : {"<turn|>", "<|tool_response>", "<end_of_turn>"}) {
    int32_t id = lookup(p);
    if (id >= 0) eog.push_back(id);
  }
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
}

// ---- encoding ---------------------------------------------------------------

void Tokenizer::Impl::emit(std::string_view text, int32_t sym, std::vector<int32_t>& out) const {
  if (sym >= 0) {
    out.push_back(sym);
    return;
  }
  // Unknown symbol: sym = -(offset + 1) of its first byte in `text`.
  const size_t off = static_cast<size_t>(-(static_cast<int64_t>(sym) + 1));
  std::string_view bytes;
  utf8::Scan r = utf8::scan(text, off);
  if (r.status == utf8::Scan::Valid)
    bytes = text[off] == ' ' ? kSpaceMark : text.substr(off, r.len);
  else
    bytes = text.substr(off, 1);  // each invalid byte on its own
  if (byte_fallback) {
    bool ok = true;
    for (char c : bytes) ok = ok && byte_id[static_cast<uint8_t>(c)] >= 0;
    if (ok) {
      for (char c : bytes) out.push_back(byte_id[static_cast<uint8_t>(c)]);
      return;
    }
  }
  if (unk < 0) fail("tokenizer: character at byte ", off, " has no piece, no byte token and there is no <unk>");
  if (out.empty() || out.back() != unk) out.push_back(unk);  // fuse_unk
}

void Tokenizer::Impl::bpe_segment(std::string_view text, Scratch& s, std::vector<int32_t>& out) const {
  std::vector<int32_t>& seg = s.seg;
  size_t n = seg.size();
  if (n == 1) {
    emit(text, seg[0], out);
    return;
  }
  if (n <= detail::bpe_heap_threshold.load(std::memory_order_relaxed)) {
    // Direct scan: find the lowest rank (leftmost on ties), merge, repeat.
    std::vector<uint32_t>& ranks = s.ranks;
    ranks.resize(n);
    for (size_t i = 0; i + 1 < n; ++i) ranks[i] = rank_of(seg[i], seg[i + 1]);
    while (n > 1) {
      uint32_t best = kNoRank;
      size_t bi = 0;
      for (size_t i = 0; i + 1 < n; ++i)
        if (ranks[i] < best) best = ranks[i], bi = i;
      if (best == kNoRank) break;
      seg[bi] = merges[best].result;
      for (size_t i = bi + 1; i + 1 < n; ++i) seg[i] = seg[i + 1];
      for (size_t i = bi; i + 2 < n; ++i) ranks[i] = ranks[i + 1];
      --n;
      if (bi > 0) ranks[bi - 1] = rank_of(seg[bi - 1], seg[bi]);
      if (bi + 1 < n) ranks[bi] = rank_of(seg[bi], seg[bi + 1]);
    }
    for (size_t i = 0; i < n; ++i) emit(text, seg[i], out);
    return;
  }

  // Min-heap of (rank << 32 | left index) over a doubly linked list of
  // symbols. Entries are never removed when they go stale; the top entry is
  // used only if its left symbol is alive and the current pair still is that
  // merge. A merge replaces the top with the new (left, next) pair, saving a
  // pop + push.
  const uint32_t end = static_cast<uint32_t>(n);
  std::vector<uint32_t>& next = s.next;
  std::vector<uint32_t>& prev = s.prev;
  next.resize(n);
  prev.resize(n);
  MinHeap heap(s.heap);
  for (uint32_t i = 0; i < end; ++i) {
    next[i] = i + 1;
    prev[i] = i == 0 ? end : i - 1;  // `end` means none
    if (i + 1 < end) {
      uint32_t r = rank_of(seg[i], seg[i + 1]);
      if (r != kNoRank) heap.append((static_cast<uint64_t>(r) << 32) | i);
    }
  }
  heap.build();
  while (!heap.empty()) {
    const uint64_t e = heap.top();
    const uint32_t rank = static_cast<uint32_t>(e >> 32);
    const uint32_t L = static_cast<uint32_t>(e);
    const uint32_t R = next[L];
    if (seg[L] == kDead || R == end || seg[L] != merges[rank].left || seg[R] != merges[rank].right) {
      heap.pop();
      continue;
    }
    seg[L] = merges[rank].result;
    seg[R] = kDead;
    next[L] = next[R];
    if (next[R] != end) prev[next[R]] = L;
    uint32_t r = next[L] != end ? rank_of(seg[L], seg[next[L]]) : kNoRank;
    if (r != kNoRank)
      heap.replace_top((static_cast<uint64_t>(r) << 32) | L);
    else
      heap.pop();
    if (prev[L] != end) {
      r = rank_of(seg[prev[L]], seg[L]);
      if (r != kNoRank) heap.push((static_cast<uint64_t>(r) << 32) | prev[L]);
    }
  }
  for (uint32_t i = 0; i != end; i = next[i]) emit(text, seg[i], out);
}

// One run without '\n' (or a newline run that is not a single piece):
// characters -> symbols, cut into independent segments, BPE per segment.
void Tokenizer::Impl::encode_run(std::string_view text, size_t begin, size_t end,
                                 std::vector<int32_t>& out, Scratch& s) const {
  const uint8_t* t = reinterpret_cast<const uint8_t*>(text.data());
  const bool split = detail::bpe_split_segments.load(std::memory_order_relaxed);
  std::vector<int32_t>& seg = s.seg;
  seg.clear();
  int prev_ascii = -1;  // previous byte when it was ASCII
  size_t p = begin;
  while (p < end) {
    const uint8_t c = t[p];
    int32_t id;
    bool boundary;
    if (c < 0x80) {
      id = ascii_id[c];
      if (id < 0) id = -static_cast<int32_t>(p) - 1;
      if (prev_ascii >= 0)
        boundary = !glue_ascii[prev_ascii * 128 + c];
      else
        boundary = !seg.empty() && !glued(seg.back(), id);
      prev_ascii = c;
      ++p;
    } else {
      utf8::Scan r = utf8::scan(t + p, end - p);
      if (r.status == utf8::Scan::Valid) {
        id = static_cast<int32_t>(cp_id.get(r.cp, static_cast<uint32_t>(-1)));
        if (id < 0) id = -static_cast<int32_t>(p) - 1;
        p += r.len;
      } else {
        id = -static_cast<int32_t>(p) - 1;
        p += 1;  // each invalid byte is a symbol of its own
      }
      boundary = !seg.empty() && !glued(seg.back(), id);
      prev_ascii = -1;
    }
    if (boundary && split) {
      bpe_segment(text, s, out);
      seg.clear();
    }
    seg.push_back(id);
  }
  if (!seg.empty()) bpe_segment(text, s, out);
  seg.clear();
}

void Tokenizer::Impl::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  if (text.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    fail("tokenizer: text of ", text.size(), " bytes is too large (limit 2 GiB)");
  thread_local Scratch scratch;
  const char* t = text.data();
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    size_t j;
    if (t[i] == '\n') {
      j = i;
      while (j < n && t[j] == '\n') ++j;
      size_t k = j - i;
      if (k < newline_run.size() && newline_run[k] >= 0) {
        out.push_back(newline_run[k]);
      } else {
        encode_run(text, i, j, out, scratch);
      }
    } else {
      const void* nl = std::memchr(t + i, '\n', n - i);
      j = nl ? static_cast<size_t>(static_cast<const char*>(nl) - t) : n;
      encode_run(text, i, j, out, scratch);
    }
    i = j;
  }
}

// ---- public API -------------------------------------------------------------

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) { impl_->build({}); }
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special, bool add_bos) const {
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && m.bos >= 0) out.push_back(m.bos);
  if (!parse_special) {
    m.encode_text(text, out);
  } else {
    size_t seg_start = 0;
    for (size_t pos = 0; pos < text.size();) {
      const auto& cands = m.special_by_byte[static_cast<uint8_t>(text[pos])];
      int32_t hit = -1;
      for (int32_t id : cands) {
        if (text.substr(pos).starts_with(m.pieces[id])) {
          hit = id;
          break;
        }
      }
      if (hit < 0) {
        ++pos;
        continue;
      }
      m.encode_text(text.substr(seg_start, pos - seg_start), out);
      out.push_back(hit);
      pos += m.pieces[hit].size();
      seg_start = pos;
    }
    m.encode_text(text.substr(seg_start), out);
  }
  // add_bos: never double a <bos> that the text itself started with.
  if (add_bos && m.bos >= 0 && out.size() >= 2 && out[1] == m.bos) out.erase(out.begin());
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  const Impl& m = *impl_;
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= n_vocab()) fail("token id ", id, " is out of range [0, ", n_vocab(), ")");
    if (m.renders(id, render_special)) out += m.text_of(id);
  }
  return out;
}

int32_t Tokenizer::n_vocab() const { return static_cast<int32_t>(impl_->pieces.size()); }

std::string_view Tokenizer::piece(int32_t id) const {
  if (id < 0 || id >= n_vocab()) fail("token id ", id, " is out of range [0, ", n_vocab(), ")");
  return impl_->pieces[id];
}

TokenKind Tokenizer::kind(int32_t id) const {
  if (id < 0 || id >= n_vocab()) fail("token id ", id, " is out of range [0, ", n_vocab(), ")");
  return impl_->kinds[id];
}

std::optional<int32_t> Tokenizer::find(std::string_view p) const {
  int32_t id = impl_->lookup(p);
  if (id < 0) return std::nullopt;
  return id;
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }

bool Tokenizer::is_end_of_generation(int32_t id) const {
  const auto& e = impl_->eog;
  return std::binary_search(e.begin(), e.end(), id);
}

// ---- streaming detokenizer --------------------------------------------------

Tokenizer::Stream::Stream(const Tokenizer& t, bool render_special)
    : tok_(&t), render_special_(render_special) {}

std::string Tokenizer::Stream::push(int32_t id) {
  const Impl& m = *tok_->impl_;
  if (id < 0 || id >= tok_->n_vocab()) fail("token id ", id, " is out of range [0, ", tok_->n_vocab(), ")");
  if (!m.renders(id, render_special_)) return {};
  pending_ += m.text_of(id);
  std::string out;
  size_t used = utf8::sanitize_into(out, pending_, /*final=*/false);
  pending_.erase(0, used);
  return out;
}

std::string Tokenizer::Stream::flush() {
  std::string out;
  utf8::sanitize_into(out, pending_, /*final=*/true);
  pending_.clear();
  return out;
}

// ---- loaders ----------------------------------------------------------------

Tokenizer Tokenizer::from_gguf(const GgufFile& f) {
  Tokenizer t;
  Impl& m = *t.impl_;
  if (const GgufValue* model = f.find("tokenizer.ggml.model")) {
    const std::string& name = model->as_string("tokenizer.ggml.model");
    if (name != "gemma4" && name != "gpt2" && name != "llama" && name != "gemma")
      fail("GGUF '", f.path(), "': tokenizer model '", name, "' is not supported (expected gemma4)");
  }
  m.pieces = f.get_strings("tokenizer.ggml.tokens");
  const size_t n = m.pieces.size();
  if (n == 0) fail("GGUF '", f.path(), "': tokenizer.ggml.tokens is empty");
  if (n >= static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    fail("GGUF '", f.path(), "': too many tokens (", n, ")");
  m.kinds.assign(n, TokenKind::Normal);
  if (f.has("tokenizer.ggml.token_type")) {
    std::vector<int64_t> types = f.get_i64s("tokenizer.ggml.token_type");
    if (types.size() != n)
      fail("GGUF '", f.path(), "': tokenizer.ggml.token_type has ", types.size(), " entries for ", n, " tokens");
    for (size_t i = 0; i < n; ++i) {
      switch (types[i]) {
        case 2: m.kinds[i] = TokenKind::Unknown; break;
        case 3: m.kinds[i] = TokenKind::Control; break;
        case 4: m.kinds[i] = TokenKind::UserDefined; break;
        case 5: m.kinds[i] = TokenKind::Unused; break;
        case 6: m.kinds[i] = TokenKind::Byte; break;
        default: m.kinds[i] = TokenKind::Normal; break;
      }
    }
  }
  if (!f.has("tokenizer.ggml.merges"))
    fail("GGUF '", f.path(), "': no tokenizer.ggml.merges (not a BPE tokenizer such as Gemma 4's)");
  std::vector<std::string> merges = f.get_strings("tokenizer.ggml.merges");
  std::vector<std::pair<std::string_view, std::string_view>> pairs;
  pairs.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& s = merges[i];
    size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
    if (sp == std::string::npos)
      fail("GGUF '", f.path(), "': merge ", i, " is not of the form \"left right\"");
    std::string_view v(s);
    pairs.emplace_back(v.substr(0, sp), v.substr(sp + 1));
  }
  auto id_key = [&](std::string_view key) -> int32_t {
    const GgufValue* v = f.find(key);
    if (!v) return -1;
    int64_t id = v->as_i64(key);
    return (id >= 0 && id < static_cast<int64_t>(n)) ? static_cast<int32_t>(id) : -1;
  };
  m.bos = id_key("tokenizer.ggml.bos_token_id");
  m.eos = id_key("tokenizer.ggml.eos_token_id");
  m.pad = id_key("tokenizer.ggml.padding_token_id");
  m.unk = id_key("tokenizer.ggml.unknown_token_id");
  for (std::string_view k : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    int32_t id = id_key(k);
    if (id >= 0) m.eog.push_back(id);
  }
  m.build(pairs);
  return t;
}

Tokenizer Tokenizer::from_hf_json_file(const std::string& path) {
  using nlohmann::json;
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open tokenizer file '", path, "'");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail("tokenizer file '", path, "' is not valid JSON: ", e.what());
  }
  try {
    if (!j.is_object() || !j.contains("model")) fail("'", path, "' has no \"model\" (not a tokenizer.json)");
    const json& model = j.at("model");
    std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE") fail("'", path, "': tokenizer model type '", type, "' is not supported (expected BPE)");
    if (j.contains("normalizer") && j["normalizer"].dump().find("\"Prepend\"") != std::string::npos)
      fail("'", path, "': normalizers that prepend a dummy prefix are not supported (not a Gemma 4 tokenizer)");

    Tokenizer t;
    Impl& m = *t.impl_;
    m.byte_fallback = model.value("byte_fallback", false);
    const json& vocab = model.at("vocab");
    if (!vocab.is_object()) fail("'", path, "': model.vocab is not an object");
    int64_t n = 0;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      int64_t id = it.value().get<int64_t>();
      if (id < 0 || id >= (1 << 30)) fail("'", path, "': bad id ", id, " for piece '", it.key(), "'");
      n = std::max(n, id + 1);
    }
    const json empty = json::array();
    const json& added = j.contains("added_tokens") && j["added_tokens"].is_array() ? j["added_tokens"] : empty;
    for (const json& a : added) {
      int64_t id = a.at("id").get<int64_t>();
      if (id < 0 || id >= (1 << 30)) fail("'", path, "': bad added token id ", id);
      n = std::max(n, id + 1);
    }
    m.pieces.assign(static_cast<size_t>(n), std::string());
    m.kinds.assign(static_cast<size_t>(n), TokenKind::Unused);  // ids without a piece
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      int64_t id = it.value().get<int64_t>();
      m.pieces[id] = it.key();
      m.kinds[id] = TokenKind::Normal;
    }
    // Added tokens: special -> Control (atomic only with parse_special);
    // non-special ones are ordinary pieces, since Gemma 4 is pure BPE (spec §1.5).
    // Gemma 4's seven tool/thinking markers stay visible when decoding, as
    // llama.cpp's conversion marks them user-defined (spec §1.3).
    static const std::array<std::string_view, 7> kVisible = {
        "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>",
        "<|\"|>",       "<|channel>",   "<channel|>"};
    for (const json& a : added) {
      int64_t id = a.at("id").get<int64_t>();
      m.pieces[id] = a.at("content").get<std::string>();
      bool special = a.value("special", false);
      bool visible = std::find(kVisible.begin(), kVisible.end(), m.pieces[id]) != kVisible.end();
      m.kinds[id] = visible ? TokenKind::UserDefined : special ? TokenKind::Control : TokenKind::Normal;
    }
    std::vector<std::pair<std::string_view, std::string_view>> pairs;  // views into `j`
    if (model.contains("merges")) {
      const json& merges = model.at("merges");
      pairs.reserve(merges.size());
      for (const json& mg : merges) {
        if (mg.is_string()) {
          const std::string& s = mg.get_ref<const std::string&>();
          size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
          if (sp == std::string::npos) fail("'", path, "': merge \"", s, "\" is not of the form \"left right\"");
          std::string_view v(s);
          pairs.emplace_back(v.substr(0, sp), v.substr(sp + 1));
        } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
          pairs.emplace_back(mg[0].get_ref<const std::string&>(), mg[1].get_ref<const std::string&>());
        } else {
          fail("'", path, "': a merge is neither \"left right\" nor [left, right]");
        }
      }
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto it = vocab.find(model["unk_token"].get<std::string>());
      if (it != vocab.end()) m.unk = it.value().get<int32_t>();
    }
    // Special ids from tokenizer_config.json next to the file, when present.
    std::filesystem::path cfg_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
    std::error_code ec;
    std::vector<std::pair<std::string, int32_t*>> cfg_ids = {
        {"bos_token", &m.bos}, {"eos_token", &m.eos}, {"pad_token", &m.pad}};
    if (std::filesystem::is_regular_file(cfg_path, ec)) {
      std::ifstream cin(cfg_path, std::ios::binary);
      json cfg = json::parse(cin, nullptr, /*allow_exceptions=*/false);
      if (cfg.is_object()) {
        for (auto& [key, dst] : cfg_ids) {
          if (!cfg.contains(key)) continue;
          const json& v = cfg[key];
          std::string content;
          if (v.is_string()) content = v.get<std::string>();
          else if (v.is_object() && v.contains("content") && v["content"].is_string()) content = v["content"].get<std::string>();
          if (content.empty()) continue;
          for (int32_t id = 0; id < static_cast<int32_t>(n); ++id)
            if (m.pieces[id] == content) {
              *dst = id;
              break;
            }
        }
      }
    }
    m.build(pairs);
    return t;
  } catch (const json::exception& e) {
    fail("tokenizer file '", path, "': unexpected structure: ", e.what());
  }
}

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    fs::path p = fs::path(path) / "tokenizer.json";
    if (fs::is_regular_file(p, ec)) return from_hf_json_file(p.string());
    fail("'", path, "' is a folder without tokenizer.json");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path, "'");
  char magic[4] = {0, 0, 0, 0};
  in.read(magic, 4);
  if (in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) return from_gguf(GgufFile::open(path));
  return from_hf_json_file(path);
}

}  // namespace g4
