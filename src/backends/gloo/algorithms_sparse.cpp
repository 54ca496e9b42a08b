// allreduce_sparse on gloo: every rank gathers every rank's entries and sums
// them locally. Ranks hold different numbers of entries, so three gathers
// per tensor: a fixed-size header (entry count, shape rank, dtype), then the
// sizes and indices together, then the values, both with allgatherv.
//
// Every rank validates the same gathered headers and sizes, so a mismatch
// makes all ranks throw at the same point rather than leaving some waiting.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gloo/allgather.h>
#include <gloo/allgatherv.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <vector>

#include "backends/gloo/algorithms.hpp"
#include "backends/gloo/algorithms_common.hpp"

namespace tutti::gloo_backend::algorithms {
namespace {

using Clock = std::chrono::steady_clock;

// What one rank announces about its coalesced tensor.
struct Header {
  int64_t nnz = 0;
  int64_t sparse_dim = 0;
  int64_t dims = 0;  // sparse + dense dimensions: how many sizes follow
  int64_t dtype = 0;

  static constexpr size_t kFields = 4;
  bool same_layout(const Header& other) const {
    return sparse_dim == other.sparse_dim && dims == other.dims && dtype == other.dtype;
  }
  std::string describe() const {
    return fmt::format("{} with {} dimension(s), {} of them sparse",
                       to_string(static_cast<DType>(dtype)), dims, sparse_dim);
  }
};

class SparseAllreduce {
 public:
  explicit SparseAllreduce(const OpContext& ctx)
      : ctx_(ctx), size_(static_cast<size_t>(ctx.size())), deadline_(Clock::now() + ctx.timeout) {}

  // The sum over ranks of `input`, coalesced.
  SparseTensor run(const SparseTensor& input) {
    const SparseTensor local = input.coalesce();
    const std::vector<Header> headers = gather_headers(local);
    for (size_t r = 1; r < size_; ++r) {
      if (!headers[r].same_layout(headers[0])) {
        throw InvalidArgument(
            fmt::format("ranks pass sparse tensors of different layouts: rank 0 has {} but "
                        "rank {} has {}; every rank must pass the same dtype and sizes",
                        headers[0].describe(), r, headers[r].describe()));
      }
    }
    const auto sparse_dim = static_cast<size_t>(headers[0].sparse_dim);
    const auto dims = static_cast<size_t>(headers[0].dims);

    // Sizes and indices travel together: rank r sends its sizes, then its
    // [sparse_dim, nnz_r] indices row by row.
    std::vector<size_t> index_counts(size_);
    for (size_t r = 0; r < size_; ++r) {
      index_counts[r] = dims + sparse_dim * static_cast<size_t>(headers[r].nnz);
    }
    std::vector<int64_t> local_indices(index_counts[static_cast<size_t>(ctx_.rank())]);
    std::copy(local.sizes().begin(), local.sizes().end(), local_indices.begin());
    if (!local_indices.empty()) {
      std::memcpy(local_indices.data() + dims, local.indices().data_ptr(),
                  local.indices().nbytes());
    }
    std::vector<int64_t> all_indices(
        std::accumulate(index_counts.begin(), index_counts.end(), size_t{0}));
    gather_varying(local_indices.data(), all_indices.data(), index_counts, sizeof(int64_t));

    // Rank 0's sizes are the reference on every rank, so all ranks name the
    // same mismatch.
    auto sizes_of = [&](size_t at) {
      return std::vector<int64_t>(all_indices.begin() + static_cast<ptrdiff_t>(at),
                                  all_indices.begin() + static_cast<ptrdiff_t>(at + dims));
    };
    const std::vector<int64_t> sizes = sizes_of(0);
    size_t offset = index_counts[0];
    for (size_t r = 1; r < size_; ++r) {
      const std::vector<int64_t> rank_sizes = sizes_of(offset);
      if (rank_sizes != sizes) {
        throw InvalidArgument(
            fmt::format("ranks pass sparse tensors of different sizes: rank 0 has [{}] but "
                        "rank {} has [{}]; every rank must pass the same sizes",
                        fmt::join(sizes, ", "), r, fmt::join(rank_sizes, ", ")));
      }
      offset += index_counts[r];
    }

    // All entries of all ranks: indices [sparse_dim, total], values
    // [total, dense sizes...] in rank order.
    int64_t total = 0;
    for (const auto& h : headers) total += h.nnz;
    Tensor indices = Tensor::empty({static_cast<int64_t>(sparse_dim), total}, DType::Int64);
    auto* out_indices = indices.data<int64_t>();
    offset = 0;
    int64_t column = 0;
    for (size_t r = 0; r < size_; ++r) {
      const auto nnz = headers[r].nnz;
      const int64_t* rank_indices = all_indices.data() + offset + dims;
      for (size_t d = 0; d < sparse_dim; ++d) {
        std::copy_n(rank_indices + d * static_cast<size_t>(nnz), nnz,
                    out_indices + d * static_cast<size_t>(total) + static_cast<size_t>(column));
      }
      column += nnz;
      offset += index_counts[r];
    }

    std::vector<int64_t> value_sizes = local.values().sizes();
    value_sizes[0] = total;
    Tensor values = Tensor::empty(value_sizes, local.dtype());
    const size_t row = static_cast<size_t>(std::accumulate(
        value_sizes.begin() + 1, value_sizes.end(), int64_t{1}, std::multiplies<>()));
    std::vector<size_t> value_counts(size_);
    for (size_t r = 0; r < size_; ++r) {
      value_counts[r] = static_cast<size_t>(headers[r].nnz) * row;
    }
    gather_varying(local.values().data_ptr(), values.data_ptr(), value_counts,
                   local.values().element_size());

    return SparseTensor(std::move(indices), std::move(values), sizes).coalesce();
  }

 private:
  std::chrono::milliseconds remaining() const {
    return std::max(std::chrono::ceil<std::chrono::milliseconds>(deadline_ - Clock::now()),
                    std::chrono::milliseconds(0));
  }

  std::vector<Header> gather_headers(const SparseTensor& local) {
    const int64_t mine[Header::kFields] = {local.nnz(), local.sparse_dim(),
                                           static_cast<int64_t>(local.sizes().size()),
                                           static_cast<int64_t>(local.dtype())};
    std::vector<int64_t> all(size_ * Header::kFields);
    if (size_ == 1) {
      std::copy_n(mine, Header::kFields, all.begin());
    } else {
      auto opts_holder = std::make_shared<::gloo::AllgatherOptions>(ctx_.context);
      auto& opts = *opts_holder;
      opts.setTag(ctx_.tag);
      opts.setTimeout(remaining());
      // gloo only reads from its input.
      opts.setInput(const_cast<int64_t*>(mine), Header::kFields);
      opts.setOutput(all.data(), all.size());
      ::gloo::allgather(opts);
      ctx_.retire(std::move(opts_holder));
    }
    std::vector<Header> headers(size_);
    for (size_t r = 0; r < size_; ++r) {
      const int64_t* h = all.data() + r * Header::kFields;
      headers[r] = {h[0], h[1], h[2], h[3]};
    }
    return headers;
  }

  // Rank r's counts[r] elements of item_bytes each land at the sum of the
  // counts before r in `output`.
  void gather_varying(const void* input, void* output, const std::vector<size_t>& counts,
                      size_t item_bytes) {
    const size_t mine = counts[static_cast<size_t>(ctx_.rank())];
    if (size_ == 1) {
      if (mine > 0) std::memcpy(output, input, mine * item_bytes);
      return;
    }
    // Every rank knows every count, so all skip an empty gather together.
    if (std::all_of(counts.begin(), counts.end(), [](size_t c) { return c == 0; })) return;
    auto opts_holder = std::make_shared<::gloo::AllgathervOptions>(ctx_.context);
    auto& opts = *opts_holder;
    opts.setTag(ctx_.tag);
    opts.setTimeout(remaining());
    with_element_type(item_bytes, [&](auto element) {
      using T = decltype(element);
      // gloo only reads from its input.
      opts.setInput(static_cast<T*>(const_cast<void*>(input)), mine);
      opts.setOutput(static_cast<T*>(output), counts);
    });
    ::gloo::allgatherv(opts);
    ctx_.retire(std::move(opts_holder));
  }

  const OpContext& ctx_;
  const size_t size_;
  const Clock::time_point deadline_;
};

}  // namespace

std::vector<Tensor> allreduce_sparse(const OpContext& ctx, std::vector<SparseTensor>& tensors) {
  std::vector<Tensor> result;
  result.reserve(2 * tensors.size());
  SparseAllreduce reducer(ctx);
  for (const auto& tensor : tensors) {
    SparseTensor sum = reducer.run(tensor);
    result.push_back(sum.indices());
    result.push_back(sum.values());
  }
  return result;
}

}  // namespace tutti::gloo_backend::algorithms
