#include "tools/tensor_convert.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"

namespace g4 {
namespace {

// Drops the whole pages of [p, p + n) from this process's page tables. For a
// MAP_SHARED file mapping this is harmless: a later access re-reads the page.
void release_pages(const uint8_t* p, size_t n) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t b = reinterpret_cast<uintptr_t>(p), e = b + n;
  b = (b + page - 1) / page * page;
  e = e / page * page;
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

void round_through(GgmlType via, float* x, int64_t n) {
  if (via == GgmlType::F16) {
    for (int64_t i = 0; i < n; ++i) x[i] = fp16_to_f32(f32_to_fp16(x[i]));
  } else if (via == GgmlType::BF16) {
    for (int64_t i = 0; i < n; ++i) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
  } else if (via != GgmlType::F32) {
    fail("internal: cannot round values through ", ggml_type_name(via));
  }
}

void validate_rows(const TensorView& src, GgmlType dst, const float* x, int64_t rows, int64_t ne0, int64_t row0) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * ne0;
    for (int64_t i = 0; i < ne0; ++i) {
      if (!std::isfinite(row[i]))
        fail("tensor '", src.name, "' holds a non-finite value (", row[i], ") in row ", row0 + r, ", element ", i,
             "; refusing to write it");
      if (dst == GgmlType::F16 && std::fabs(row[i]) > 65504.f)
        fail("tensor '", src.name, "' holds ", row[i], " in row ", row0 + r, ", element ", i,
             ", which overflows F16 (largest 65504)");
    }
  }
}

}  // namespace

void check_quantizable(GgmlType t) {
  const int64_t bs = ggml_type_info(t).block_size;
  std::vector<float> zeros(static_cast<size_t>(bs), 0.f);
  std::vector<uint8_t> out(ggml_row_bytes(t, bs));
  kernels::quantize_rows(t, zeros.data(), out.data(), 1, bs);
}

uint64_t convert_tensor_rows(const TensorView& src, GgmlType dst, const RowSink& sink, const RowConvertOptions& opt) {
  if (src.ne.empty()) fail("tensor '", src.name, "' has no shape");
  const int64_t ne0 = src.ne[0];
  const int64_t total_rows = src.nrows();
  const int64_t n_rows = opt.n_rows < 0 ? total_rows : opt.n_rows;
  if (n_rows > total_rows) fail("tensor '", src.name, "': asked for ", n_rows, " rows, it has ", total_rows);
  const size_t src_rb = ggml_row_bytes(src.type, ne0);
  if (src_rb * static_cast<size_t>(total_rows) > src.nbytes)
    fail("tensor '", src.name, "': data (", src.nbytes, " bytes) is smaller than its shape ", src.shape_string(),
         " needs");
  if (ne0 % ggml_type_info(dst).block_size != 0)
    fail("tensor '", src.name, "': rows of ", ne0, " elements cannot be stored as ", ggml_type_name(dst),
         " (block size ", ggml_type_info(dst).block_size, ")");
  const size_t dst_rb = ggml_row_bytes(dst, ne0);
  const int64_t chunk_rows =
      std::max<int64_t>(1, static_cast<int64_t>(opt.chunk_f32_bytes / (static_cast<size_t>(ne0) * sizeof(float))));

  uint64_t written = 0;
  if (dst == src.type) {
    // Same type: pass the stored bytes through, chunk by chunk (as
    // llama-quantize does, without re-validating them).
    for (int64_t r0 = 0; r0 < n_rows; r0 += chunk_rows) {
      const int64_t m = std::min(chunk_rows, n_rows - r0);
      const uint8_t* p = src.data + static_cast<size_t>(r0) * src_rb;
      const size_t nb = static_cast<size_t>(m) * src_rb;
      sink(p, nb, nb);
      release_pages(p, nb);
      written += nb;
    }
    return written;
  }

  // The expansion to fp32 (exact for every type the kernels dequantize).
  kernels::WeightMatrix wm;
  try {
    wm = kernels::WeightMatrix::raw(src.type, src.data, ne0, total_rows);
  } catch (const Error& e) {
    fail("tensor '", src.name, "': cannot read its ", ggml_type_name(src.type), " values: ", e.what());
  }
  const int n_threads = opt.pool ? opt.pool->size() : 1;
  // Rows per task: enough work to amortise the hand-off, at least one row.
  const int64_t rows_per_task = std::max<int64_t>(1, 65536 / std::max<int64_t>(ne0, 1));
  std::vector<std::vector<float>> scratch(static_cast<size_t>(n_threads));
  std::vector<uint8_t> out(static_cast<size_t>(std::min(chunk_rows, n_rows)) * dst_rb);

  for (int64_t r0 = 0; r0 < n_rows; r0 += chunk_rows) {
    const int64_t m = std::min(chunk_rows, n_rows - r0);
    const int64_t n_tasks = (m + rows_per_task - 1) / rows_per_task;
    auto work = [&](int64_t t0, int64_t t1, int tid) {
      std::vector<float>& f = scratch[static_cast<size_t>(tid)];
      f.resize(static_cast<size_t>(rows_per_task * ne0));
      for (int64_t task = t0; task < t1; ++task) {
        const int64_t a = task * rows_per_task, b = std::min(m, a + rows_per_task);
        for (int64_t r = a; r < b; ++r) kernels::dequantize_row(wm, r0 + r, f.data() + (r - a) * ne0);
        round_through(opt.round_via, f.data(), (b - a) * ne0);
        if (opt.validate) validate_rows(src, dst, f.data(), b - a, ne0, r0 + a);
        kernels::quantize_rows(dst, f.data(), out.data() + static_cast<size_t>(a) * dst_rb, b - a, ne0);
      }
    };
    if (opt.pool && n_tasks > 1)
      opt.pool->parallel_for(n_tasks, work);
    else
      work(0, n_tasks, 0);
    const size_t nb = static_cast<size_t>(m) * dst_rb;
    sink(out.data(), nb, static_cast<uint64_t>(m) * src_rb);
    release_pages(src.data + static_cast<size_t>(r0) * src_rb, static_cast<size_t>(m) * src_rb);
    written += nb;
  }
  return written;
}

}  // namespace g4
