// The flight recorder in one process: the ring, entry states, the JSON
// format and its parser, the Work observer hooks, and the root cause
// published through a store (including a store that never answers).
#include "debug/flight_recorder.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <thread>

#include "core/engine_work.hpp"
#include "debug/group_tracer.hpp"
#include "debug/root_cause.hpp"
#include "debug/trace_dump.hpp"
#include "harness/expect.hpp"
#include "tutti/errors.hpp"
#include "tutti/hash_store.hpp"

namespace tutti::trace {
namespace {

using namespace std::chrono_literals;

OpInfo allreduce_of(const Tensor& t) { return describe_op(OpType::ALLREDUCE, t); }

TEST(FlightRecorder, RingKeepsTheLastNAndCountsTheDropped) {
  FlightRecorder recorder(3);
  const uint32_t g = recorder.register_group("default", 1, 4);
  Tensor t = Tensor::zeros({2, 3}, DType::Float32);
  std::vector<uint64_t> ids;
  for (uint64_t seq = 1; seq <= 5; ++seq) ids.push_back(recorder.record(g, seq, allreduce_of(t)));
  Dump dump = recorder.snapshot("test");
  EXPECT_EQ(dump.capacity, 3u);
  EXPECT_EQ(dump.dropped, 2u);
  ASSERT_EQ(dump.entries.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(dump.entries[i].seq, i + 3);  // oldest first
    EXPECT_EQ(dump.entries[i].id, ids[i + 2]);
    EXPECT_EQ(dump.entries[i].group, "default");
    EXPECT_EQ(dump.entries[i].op, OpType::ALLREDUCE);
    EXPECT_EQ(dump.entries[i].sizes, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(dump.entries[i].numel, 6);
    EXPECT_EQ(dump.entries[i].state, EntryState::ENQUEUED);
  }
  // An overwritten entry can no longer change.
  recorder.completed(ids[0]);
  EXPECT_FALSE(recorder.failed(ids[1], "late"));
  dump = recorder.snapshot("test");
  for (const auto& e : dump.entries) EXPECT_EQ(e.state, EntryState::ENQUEUED);
  EXPECT_EQ(dump.rank, 1);
  EXPECT_EQ(dump.world_size, 4);
  ASSERT_EQ(dump.groups.size(), 1u);
  EXPECT_EQ(dump.groups[0].collectives, 5u);
}

TEST(FlightRecorder, StatesAndTimesFollowTheOperation) {
  FlightRecorder recorder(8);
  const uint32_t g = recorder.register_group("default", 0, 2);
  Tensor t = Tensor::zeros({4}, DType::Int64);
  const uint64_t ok = recorder.record(g, 1, allreduce_of(t));
  const uint64_t bad = recorder.record(g, 2, allreduce_of(t));
  recorder.started(ok);
  recorder.completed(ok);
  recorder.started(ok);  // does not move it back
  recorder.started(bad);
  OpSummary summary;
  ASSERT_TRUE(recorder.failed(bad, "TimeoutError: allreduce #2 timed out", &summary));
  EXPECT_EQ(summary.str(), "allreduce #2 on group 'default'");
  Dump dump = recorder.snapshot("test");
  ASSERT_EQ(dump.entries.size(), 2u);
  const Entry& a = dump.entries[0];
  EXPECT_EQ(a.state, EntryState::COMPLETED);
  EXPECT_GT(a.enqueued_us, 0);
  EXPECT_GE(a.started_us, a.enqueued_us);
  EXPECT_GE(a.completed_us, a.started_us);
  // Start and end come from the coarse clock: within a tick (at most 10 ms
  // on Linux) of the precise one, and never before the enqueue time above.
  EXPECT_LE(a.completed_us, now_us() + 10000);
  EXPECT_GE(coarse_now_us(), now_us() - 10000);
  EXPECT_TRUE(a.error.empty());
  const Entry& b = dump.entries[1];
  EXPECT_EQ(b.state, EntryState::FAILED);
  EXPECT_EQ(b.error, "TimeoutError: allreduce #2 timed out");
  EXPECT_GE(b.completed_us, b.started_us);
}

TEST(FlightRecorder, DisabledRecordsNothing) {
  FlightRecorder recorder(0);
  EXPECT_FALSE(recorder.enabled());
  EXPECT_EQ(recorder.record(recorder.register_group("g", 0, 1), 1, describe_op(OpType::BARRIER)),
            0u);
  EXPECT_TRUE(recorder.snapshot("x").entries.empty());
}

TEST(FlightRecorder, CapacityFromTheEnvironmentValue) {
  EXPECT_EQ(parse_capacity(nullptr), kDefaultCapacity);
  EXPECT_EQ(parse_capacity("0"), 0u);
  EXPECT_EQ(parse_capacity("17"), 17u);
  EXPECT_INVALID_ARGUMENT(parse_capacity("-1"), "TUTTI_TRACE_BUFFER='-1'");
  EXPECT_INVALID_ARGUMENT(parse_capacity("12x"), "TUTTI_TRACE_BUFFER='12x'");
  EXPECT_INVALID_ARGUMENT(parse_capacity("99999999999"), "between 0");
}

TEST(TraceDump, RoundTripsThroughTheParser) {
  FlightRecorder recorder(16);
  const uint32_t g = recorder.register_group("default", 2, 3);
  const uint32_t sub = recorder.register_group("default/1", 0, 2);
  Tensor a = Tensor::zeros({5, 2, 1}, DType::BFloat16);
  std::vector<Tensor> list = {Tensor::zeros({3}, DType::Int32), Tensor::zeros({3}, DType::Int32)};
  auto bcast = describe_op(OpType::BROADCAST, list);
  bcast.root = 1;
  recorder.completed(recorder.record(g, 1, bcast));
  auto send = describe_op(OpType::SEND, a);
  send.peer = 0;
  send.tag = 42;
  const uint64_t sent = recorder.record(sub, 1, send);
  recorder.started(sent);
  recorder.failed(recorder.record(g, 2, describe_op(OpType::BARRIER)),
                  "DistNetworkError: rank 1 \"closed\"\n\xff");
  Dump dump = recorder.snapshot("round trip");
  Dump back = parse_trace_dump(to_json(dump));
  EXPECT_EQ(back.rank, 2);
  EXPECT_EQ(back.world_size, 3);
  EXPECT_EQ(back.pid, dump.pid);
  EXPECT_EQ(back.hostname, dump.hostname);
  EXPECT_EQ(back.reason, "round trip");
  EXPECT_EQ(back.dumped_us, dump.dumped_us);
  ASSERT_EQ(back.groups.size(), 2u);
  EXPECT_EQ(back.groups[1].name, "default/1");
  EXPECT_EQ(back.groups[1].p2p, 1u);
  ASSERT_EQ(back.entries.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const Entry& x = dump.entries[i];
    const Entry& y = back.entries[i];
    EXPECT_EQ(y.id, x.id);
    EXPECT_EQ(y.group, x.group);
    EXPECT_EQ(y.seq, x.seq);
    EXPECT_EQ(y.p2p, x.p2p);
    EXPECT_EQ(y.op, x.op);
    EXPECT_EQ(y.has_tensors, x.has_tensors);
    EXPECT_EQ(y.dtype, x.dtype);
    EXPECT_EQ(y.num_tensors, x.num_tensors);
    EXPECT_EQ(y.numel, x.numel);
    EXPECT_EQ(y.sizes, x.sizes);
    EXPECT_EQ(y.root, x.root);
    EXPECT_EQ(y.peer, x.peer);
    EXPECT_EQ(y.tag, x.tag);
    EXPECT_EQ(y.state, x.state);
    EXPECT_EQ(y.enqueued_us, x.enqueued_us);
    EXPECT_EQ(y.started_us, x.started_us);
    EXPECT_EQ(y.completed_us, x.completed_us);
  }
  EXPECT_EQ(back.entries[0].root, 1);
  EXPECT_EQ(back.entries[0].num_tensors, 2);
  EXPECT_EQ(back.entries[0].numel, 6);
  EXPECT_TRUE(back.entries[1].p2p);
  EXPECT_EQ(back.entries[1].peer, 0);
  EXPECT_EQ(back.entries[1].tag, 42);
  EXPECT_EQ(back.entries[1].state, EntryState::STARTED);
  EXPECT_FALSE(back.entries[2].has_tensors);
  // Invalid UTF-8 is replaced, the rest of the message survives.
  EXPECT_EQ(back.entries[2].error.rfind("DistNetworkError: rank 1 \"closed\"\n", 0), 0u);
}

TEST(TraceDump, BadInputRaisesInvalidArgumentNamingTheField) {
  FlightRecorder recorder(4);
  recorder.record(recorder.register_group("g", 0, 1), 1, describe_op(OpType::BARRIER));
  const std::string good = to_json(recorder.snapshot("x"));
  EXPECT_INVALID_ARGUMENT(parse_trace_dump(""), "not valid JSON");
  EXPECT_INVALID_ARGUMENT(parse_trace_dump(good.substr(0, good.size() / 2)), "not valid JSON");
  EXPECT_INVALID_ARGUMENT(parse_trace_dump("[1, 2]"), "not a JSON object");
  EXPECT_INVALID_ARGUMENT(parse_trace_dump("{\"format\": \"other\"}"), "not a tutti-trace dump");
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string text = good;
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return text.replace(at, from.size(), to);
  };
  EXPECT_INVALID_ARGUMENT(parse_trace_dump(replace("\"version\": 1", "\"version\": 9")),
                          "format version 9");
  EXPECT_INVALID_ARGUMENT(parse_trace_dump(replace("\"op\": \"barrier\"", "\"op\": \"dance\"")),
                          "dump.entries[0]", "unknown operation 'dance'");
  EXPECT_INVALID_ARGUMENT(parse_trace_dump(replace("\"seq\": 1", "\"seq\": -1")),
                          "dump.entries[0].seq", "negative");
  EXPECT_INVALID_ARGUMENT(parse_trace_dump(replace("\"seq\": 1", "\"seq\": \"1\"")),
                          "dump.entries[0].seq", "not an integer");
  EXPECT_INVALID_ARGUMENT(parse_trace_dump(replace("\"state\": \"enqueued\"", "\"state\": 3")),
                          "dump.entries[0].state", "not a string");
  EXPECT_INVALID_ARGUMENT(parse_trace_dump(replace("\"rank\": 0,", "")), "dump.groups[0]",
                          "no field 'rank'");
  EXPECT_INVALID_ARGUMENT(parse_trace_dump(replace("\"sizes\": []", "\"sizes\": [1,2,3,4,5,6,7]")),
                          "more than 6");
}

// ------------------------------------------------------------ observer

class RecordingObserver : public WorkObserver {
 public:
  void on_started(uint64_t token) noexcept override { started.push_back(token); }
  std::exception_ptr on_finished(uint64_t token, std::exception_ptr error,
                                 bool can_amend) noexcept override {
    finished.push_back(token);
    amendable.push_back(can_amend);
    if (error && can_amend) return std::make_exception_ptr(TimeoutError("amended"));
    return error;
  }
  std::vector<uint64_t> started, finished;
  std::vector<bool> amendable;
};

TEST(WorkObserver, SeesStartAndFinishAndMayAmendTheError) {
  auto observer = std::make_shared<RecordingObserver>();
  EngineWork work(OpType::ALLREDUCE, "allreduce #1");
  work.set_observer(observer, 7);
  EXPECT_TRUE(observer->started.empty());
  work.started();
  work.started();  // only the first counts
  EXPECT_EQ(observer->started, std::vector<uint64_t>{7});
  work.complete(std::make_exception_ptr(TimeoutError("original")));
  EXPECT_EQ(observer->finished, std::vector<uint64_t>{7});
  EXPECT_EQ(observer->amendable, std::vector<bool>{true});
  EXPECT_THROW(
      {
        try {
          work.wait();
        } catch (const TimeoutError& e) {
          EXPECT_STREQ(e.what(), "amended");
          throw;
        }
      },
      TimeoutError);
}

TEST(WorkObserver, AttachedLateHearsWhatAlreadyHappened) {
  auto observer = std::make_shared<RecordingObserver>();
  EngineWork work(OpType::SEND, "send");
  work.started();
  work.complete(std::make_exception_ptr(DistNetworkError("gone")));
  work.set_observer(observer, 3);
  EXPECT_EQ(observer->started, std::vector<uint64_t>{3});
  EXPECT_EQ(observer->finished, std::vector<uint64_t>{3});
  EXPECT_EQ(observer->amendable, std::vector<bool>{false});
  EXPECT_THROW(work.wait(), DistNetworkError);  // not amended
}

TEST(WorkObserver, SucceededWorkIsReportedWithoutError) {
  auto observer = std::make_shared<RecordingObserver>();
  EngineWork work(OpType::BARRIER, "barrier");
  work.set_observer(observer, 1);
  work.complete();
  EXPECT_TRUE(work.wait());
  EXPECT_EQ(observer->finished.size(), 1u);
}

// ------------------------------------------------------------ root cause

TEST(RootCause, FirstPublisherWinsAndOthersAreDecoratedKeepingTheirType) {
  auto store = std::make_shared<HashStore>();
  FlightRecorder recorder(16);
  auto rank2 = GroupTracer::create(store, 2, 3, "default", recorder);
  auto rank0 = GroupTracer::create(store, 0, 3, "default", recorder);
  Tensor t = Tensor::zeros({1}, DType::Float32);

  auto first = std::make_shared<EngineWork>(OpType::RECV, "recv");
  auto issued = rank2->issue(rank2->next_p2p(), describe_op(OpType::RECV, t),
                             [&]() -> std::shared_ptr<Work> { return first; });
  first->complete(std::make_exception_ptr(TimeoutError("recv timed out after 500 ms")));
  try {
    issued->wait();
    ADD_FAILURE() << "expected TimeoutError";
  } catch (const TimeoutError& e) {
    EXPECT_STREQ(e.what(), "recv timed out after 500 ms");  // the first is not decorated
  }

  auto later = std::make_shared<EngineWork>(OpType::ALLREDUCE, "allreduce");
  rank0->issue(1, describe_op(OpType::ALLREDUCE, t),
               [&]() -> std::shared_ptr<Work> { return later; });
  later->complete(std::make_exception_ptr(DistNetworkError("allreduce #1: peer closed")));
  try {
    later->wait();
    ADD_FAILURE() << "expected DistNetworkError";
  } catch (const DistNetworkError& e) {
    EXPECT_STREQ(e.what(),
                 "allreduce #1: peer closed; rank 2 failed first: recv #1 (p2p) on group "
                 "'default': TimeoutError: recv timed out after 500 ms");
  }
  // Both failures are in the recorder with their own (undecorated) error.
  Dump dump = recorder.snapshot("t");
  ASSERT_EQ(dump.entries.size(), 2u);
  EXPECT_EQ(dump.entries[0].error, "TimeoutError: recv timed out after 500 ms");
  EXPECT_EQ(dump.entries[1].error, "DistNetworkError: allreduce #1: peer closed");
}

TEST(RootCause, BlockingOperationsAreDecoratedToo) {
  auto store = std::make_shared<HashStore>();
  FlightRecorder recorder(4);
  RootCause(store).publish("rank 1 failed first: barrier #3 on group 'g': TimeoutError: late");
  auto tracer = GroupTracer::create(store, 0, 2, "g", recorder);
  try {
    tracer->run_blocking(1, describe_op(OpType::MONITORED_BARRIER),
                         [] { throw DistBackendError("monitored_barrier #1: rank 1 missing"); });
    ADD_FAILURE() << "expected DistBackendError";
  } catch (const DistBackendError& e) {
    EXPECT_STREQ(e.what(),
                 "monitored_barrier #1: rank 1 missing; rank 1 failed first: barrier #3 on group "
                 "'g': TimeoutError: late");
  }
}

// A store whose compare_set never answers until released.
class HungStore : public HashStore {
 public:
  std::vector<uint8_t> compare_set(const std::string&, const std::vector<uint8_t>&,
                                   const std::vector<uint8_t>&) override {
    std::unique_lock<std::mutex> lock(mutex);
    cv.wait(lock, [&] { return released; });
    throw DistNetworkError("released");
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex);
    released = true;
    cv.notify_all();
  }
  std::mutex mutex;
  std::condition_variable cv;
  bool released = false;
};

TEST(RootCause, AHungStoreDelaysAFailureByTheBoundOnlyAndOnce) {
  auto store = std::make_shared<HungStore>();
  RootCause root(store, 300ms);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(root.publish("rank 0 failed first: x").kind, RootCause::Verdict::UNKNOWN);
  const auto first = std::chrono::steady_clock::now() - start;
  EXPECT_GE(first, 300ms);
  EXPECT_LT(first, 3s);
  // Decided once: the second failure does not wait again.
  const auto again = std::chrono::steady_clock::now();
  EXPECT_EQ(root.publish("rank 0 failed first: y").kind, RootCause::Verdict::UNKNOWN);
  EXPECT_LT(std::chrono::steady_clock::now() - again, 200ms);
  store->release();
}

TEST(RootCause, ADeadStoreLeavesTheErrorUnchanged) {
  class DeadStore : public HashStore {
   public:
    std::vector<uint8_t> compare_set(const std::string&, const std::vector<uint8_t>&,
                                     const std::vector<uint8_t>&) override {
      throw DistNetworkError("connection refused");
    }
  };
  FlightRecorder recorder(4);
  auto tracer = GroupTracer::create(std::make_shared<DeadStore>(), 1, 2, "g", recorder);
  auto work = std::make_shared<EngineWork>(OpType::BARRIER, "barrier");
  tracer->issue(1, describe_op(OpType::BARRIER), [&]() -> std::shared_ptr<Work> { return work; });
  work->complete(std::make_exception_ptr(DistNetworkError("barrier #1 failed")));
  try {
    work->wait();
  } catch (const DistNetworkError& e) {
    EXPECT_STREQ(e.what(), "barrier #1 failed");
  }
}

}  // namespace
}  // namespace tutti::trace
