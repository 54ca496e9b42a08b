#include "backends/gloo/census.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <system_error>
#include <thread>
#include <vector>

#include "store/tcp/socket.hpp"
#include "tutti/errors.hpp"
#include "tutti/prefix_store.hpp"

namespace tutti::gloo_backend {
namespace {

// What the helper thread found; shared with the caller, which may stop
// waiting for it.
struct Answers {
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;                 // GUARDED_BY(mutex)
  std::map<int, std::string> alive;  // GUARDED_BY(mutex): rank -> its failed op
  std::vector<int> silent;           // GUARDED_BY(mutex)
  std::string store_error;           // GUARDED_BY(mutex)
};

std::string key_of(int rank) { return Census::kKeyPrefix + std::to_string(rank); }

// One line "<rank> <failed op>" per rank that answered.
std::map<int, std::string> parse_answers(const std::vector<uint8_t>& list) {
  std::map<int, std::string> alive;
  const std::string text(list.begin(), list.end());
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    const size_t space = line.find(' ');
    if (space != std::string::npos) {
      alive[std::atoi(line.substr(0, space).c_str())] = line.substr(space + 1);
    }
    start = end + 1;
  }
  return alive;
}

// How an answer names an operation that timed out.
std::string answer_of(const std::string& failed_op, bool timed_out) {
  return timed_out ? failed_op + " (timed out)" : failed_op;
}

// Few round trips, so that a loaded store answers in time: one append to
// the list of answers, a quiet set of this rank's key (for wait; after the
// append, so that a rank that sees the key finds the line), one wait for
// every other rank's key (at most the grace), one read of the list.
void ask(Store& store, int rank, int size, const std::string& answer,
         std::chrono::milliseconds grace, Answers& answers) {
  std::map<int, std::string> alive;
  std::vector<int> silent;
  std::string error;
  try {
    const std::string line = fmt::format("{} {}\n", rank, answer);
    store.append(Census::kListKey, std::vector<uint8_t>(line.begin(), line.end()));
    store.set(key_of(rank), std::vector<uint8_t>(answer.begin(), answer.end()));
    std::vector<std::string> keys;
    for (int peer = 0; peer < size; ++peer) {
      if (peer != rank) keys.push_back(key_of(peer));
    }
    try {
      store.wait(keys, grace);
    } catch (const TimeoutError&) {
      // Some did not answer: the list says which did.
    }
    alive = parse_answers(store.get(Census::kListKey));
    alive.erase(rank);
    for (int peer = 0; peer < size; ++peer) {
      if (peer != rank && alive.count(peer) == 0) silent.push_back(peer);
    }
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "unknown error";
  }
  std::lock_guard<std::mutex> lock(answers.mutex);
  answers.alive = std::move(alive);
  answers.silent = std::move(silent);
  answers.store_error = std::move(error);
  answers.done = true;
  answers.cv.notify_all();
}

std::string ranks_text(const std::vector<int>& ranks) {
  return fmt::format("rank{} {}", ranks.size() > 1 ? "s" : "", fmt::join(ranks, ", "));
}

}  // namespace

std::chrono::milliseconds Census::grace(std::chrono::milliseconds timeout) {
  return std::clamp(timeout / 2, std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
}

Census::Census(std::shared_ptr<Store> store, int rank, int size, std::string store_name,
               int store_host)
    : store_(std::move(store)),
      rank_(rank),
      size_(size),
      store_name_(std::move(store_name)),
      store_host_(store_host) {}

std::string Census::roll_call(const std::string& failed_op, bool timed_out,
                              std::chrono::milliseconds grace) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (done_) return verdict_;
  done_ = true;
  if (!store_ || size_ < 2) return verdict_;
  try {
    auto answers = std::make_shared<Answers>();
    try {
      // Detached: a call into a store that does not answer is left to time
      // out alone; it owns everything it touches.
      std::thread([store = store_, rank = rank_, size = size_,
                   answer = answer_of(failed_op, timed_out), grace, answers] {
        ask(*store, rank, size, answer, grace, *answers);
      }).detach();
    } catch (const std::system_error&) {
      return verdict_;  // no thread to spare: the error goes out as it is
    }
    const std::string host_note =
        store_host_ >= 0 && store_host_ != rank_
            ? fmt::format(": rank {}, which serves it, may be dead or stopped", store_host_)
            : "";
    std::unique_lock<std::mutex> wait_lock(answers->mutex);
    const auto limit = grace + kStoreSlack;
    if (!answers->cv.wait_for(wait_lock, limit, [&] { return answers->done; })) {
      verdict_ = fmt::format("; roll call: {} did not answer within {} ms{}", store_name_,
                             limit.count(), host_note);
      return verdict_;
    }
    if (!answers->store_error.empty()) {
      verdict_ = fmt::format("; roll call: {} failed{} ({})", store_name_, host_note,
                             answers->store_error);
      return verdict_;
    }
    std::vector<std::string> alive;
    const std::string peer_timeout = answer_of(failed_op, /*timed_out=*/true);
    for (const auto& [peer, op] : answers->alive) {
      alive.push_back(fmt::format("rank {} failed in {}", peer, op));
      if (op == peer_timeout) peer_timed_out_ = true;
    }
    if (answers->silent.empty()) {
      verdict_ = fmt::format("; roll call: every rank is alive ({})", fmt::join(alive, ", "));
    } else {
      verdict_ = fmt::format(
          "; roll call: {} did not answer within {} ms: dead, stopped, or not in an operation "
          "of this group{}{}",
          ranks_text(answers->silent), grace.count(),
          alive.empty() ? "" : "; alive: ", fmt::join(alive, ", "));
    }
  } catch (...) {
    verdict_.clear();  // out of memory while describing: the error goes out as it is
  }
  return verdict_;
}

bool Census::peer_timed_out() {
  std::lock_guard<std::mutex> lock(mutex_);
  return peer_timed_out_;
}

const TCPStore* find_tcp_store(const Store& store) {
  const Store* current = &store;
  while (const auto* prefixed = dynamic_cast<const PrefixStore*>(current)) {
    current = prefixed->underlying().get();
  }
  return dynamic_cast<const TCPStore*>(current);
}

std::string describe_store(const Store& store) {
  if (const TCPStore* tcp = find_tcp_store(store)) {
    return fmt::format("the store at {}", net::endpoint(tcp->host(), tcp->port()));
  }
  return "the group's store";
}

}  // namespace tutti::gloo_backend
