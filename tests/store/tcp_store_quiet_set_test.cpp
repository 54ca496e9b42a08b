// TCPStore's unacknowledged set (protocol version 2): a set returns once it
// is sent, yet every later call of the same store object, from any thread,
// sees it; a wait parked behind it does not hold other threads up; a set
// sent just before the connection closes is still applied; and version 1
// clients are still served.
#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "store/tcp/protocol.hpp"
#include "store/tcp/socket.hpp"
#include "tutti/errors.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class QuietSetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server = std::make_shared<TCPStore>(
        "127.0.0.1", TCPStoreOptions{.port = 0, .is_server = true, .timeout = 10s});
    client = std::make_shared<TCPStore>("127.0.0.1",
                                        TCPStoreOptions{.port = server->port(), .timeout = 10s});
  }

  net::Fd raw() { return net::connect_with_retry("127.0.0.1", server->port(), Clock::now() + 5s); }
  static void send(const net::Fd& fd, const std::vector<uint8_t>& data) {
    net::send_all(fd.get(), data.data(), data.size(), Clock::now() + 5s, "server");
  }

  // Reads from fd until `parse` accepts a prefix of what arrived; returns
  // the bytes it consumed, removed from *in.
  template <class Parse>
  static void read_until(const net::Fd& fd, std::vector<uint8_t>* in, Parse parse) {
    uint8_t buf[4096];
    const auto deadline = Clock::now() + 5s;
    while (true) {
      tcpstore::ParseResult r = parse(in->data(), in->size());
      ASSERT_NE(r.status, tcpstore::ParseStatus::kMalformed) << r.reason;
      if (r.status == tcpstore::ParseStatus::kOk) {
        in->erase(in->begin(), in->begin() + static_cast<std::ptrdiff_t>(r.consumed));
        return;
      }
      size_t n = net::recv_some(fd.get(), buf, sizeof buf, deadline, "server");
      in->insert(in->end(), buf, buf + n);
    }
  }

  static tcpstore::Request request(tcpstore::Op op, std::vector<std::string> keys,
                                   std::vector<std::vector<uint8_t>> values = {},
                                   int64_t number = 0) {
    tcpstore::Request q;
    q.op = op;
    q.keys = std::move(keys);
    q.values = std::move(values);
    q.number = number;
    return q;
  }

  std::shared_ptr<TCPStore> server;
  std::shared_ptr<TCPStore> client;
};

// Thread A sets a key and hands over to thread B while A keeps its
// connection busy; B's check must see the key although B may be on another
// connection. The values are large so that a set is still arriving at the
// server when set() returns: a request overtaking it on another connection
// would be answered first.
TEST_F(QuietSetTest, SetIsSeenByAnotherThreadAtOnce) {
  std::mutex mutex;
  std::condition_variable cv;
  int handed = -1;
  int checked = -1;
  constexpr int kRounds = 40;
  const std::vector<uint8_t> big(4 << 20, 7);
  std::thread checker([&] {
    for (int i = 0; i < kRounds; ++i) {
      {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return handed == i; });
      }
      EXPECT_TRUE(client->check({"seen/" + std::to_string(i)})) << "round " << i;
      {
        std::lock_guard<std::mutex> lock(mutex);
        checked = i;
      }
      cv.notify_all();
    }
  });
  for (int i = 0; i < kRounds; ++i) {
    client->set("seen/" + std::to_string(i), big);
    {
      std::lock_guard<std::mutex> lock(mutex);
      handed = i;
    }
    cv.notify_all();
    // Keep a connection busy meanwhile, so the pool has more than one.
    EXPECT_EQ(client->num_keys(), i + 1);
    std::unique_lock<std::mutex> lock(mutex);
    cv.wait(lock, [&] { return checked == i; });
  }
  checker.join();
}

// A wait parked behind a set holds the connection the set went out on; the
// server's PARKED notice lets other threads go on at once instead of after
// the wait.
TEST_F(QuietSetTest, ParkedWaitDoesNotHoldUpOtherThreads) {
  std::promise<void> waiting;
  auto waiter = std::async(std::launch::async, [&] {
    client->set("parked/key", std::string("x"));
    waiting.set_value();
    const auto start = Clock::now();
    client->wait({"parked/gate"}, 10s);
    return Clock::now() - start;
  });
  waiting.get_future().wait();
  std::this_thread::sleep_for(50ms);  // let the wait reach the server
  const auto start = Clock::now();
  EXPECT_TRUE(client->check({"parked/key"}));
  const auto checked_after = Clock::now() - start;
  client->set("parked/gate", std::string("open"));
  EXPECT_LT(waiter.get(), 9s);  // released by the gate, not by its timeout
  EXPECT_LT(checked_after, 5s);
}

// The server applies requests that arrive together with the end of the
// stream: a process may set a key and exit at once.
TEST_F(QuietSetTest, SetJustBeforeCloseIsApplied) {
  for (int i = 0; i < 100; ++i) {
    const std::string key = "closing/" + std::to_string(i);
    {
      TCPStore brief("127.0.0.1", TCPStoreOptions{.port = server->port(), .timeout = 10s});
      brief.set(key, std::vector<uint8_t>(100000, static_cast<uint8_t>(i)));
    }
    server->wait({key}, 5s);
    EXPECT_EQ(server->get(key), std::vector<uint8_t>(100000, static_cast<uint8_t>(i)));
  }
}

TEST_F(QuietSetTest, ParkedNoticeOnTheWire) {
  auto fd = raw();
  auto bytes = tcpstore::encode_hello("");
  tcpstore::encode_request(request(tcpstore::Op::SET_QUIET, {"wire/a"}, {{1, 2, 3}}), &bytes);
  tcpstore::encode_request(request(tcpstore::Op::WAIT, {"wire/b"}, {}, 10000), &bytes);
  send(fd, bytes);
  std::vector<uint8_t> in;
  uint16_t version = 0;
  tcpstore::HelloStatus status{};
  std::string message;
  tcpstore::Limits limits;
  limits.max_value_bytes = 0;
  read_until(fd, &in, [&](const uint8_t* d, size_t n) {
    return tcpstore::parse_hello_reply(d, n, &version, &status, &message, &limits);
  });
  EXPECT_EQ(version, tcpstore::kVersion);
  EXPECT_EQ(status, tcpstore::HelloStatus::OK);
  EXPECT_EQ(limits.max_value_bytes, size_t{64} << 20);  // the server's default
  tcpstore::Response a;
  read_until(fd, &in, [&](const uint8_t* d, size_t n) {
    return tcpstore::parse_response(tcpstore::Op::WAIT, d, n, tcpstore::Limits{}, &a);
  });
  EXPECT_EQ(a.status, tcpstore::Status::PARKED);
  EXPECT_EQ(server->get(std::string("wire/a")), (std::vector<uint8_t>{1, 2, 3}));
  client->set("wire/b", std::string("now"));
  read_until(fd, &in, [&](const uint8_t* d, size_t n) {
    return tcpstore::parse_response(tcpstore::Op::WAIT, d, n, tcpstore::Limits{}, &a);
  });
  EXPECT_EQ(a.status, tcpstore::Status::OK);
}

// A version 1 client gets a version 1 hello reply (no limits) and an answer
// to every request.
TEST_F(QuietSetTest, VersionOneClientIsServed) {
  auto fd = raw();
  auto bytes = tcpstore::encode_hello("");
  bytes[4] = 1;  // version, little-endian
  bytes[5] = 0;
  tcpstore::encode_request(request(tcpstore::Op::SET, {"v1/k"}, {{9}}), &bytes);
  tcpstore::encode_request(request(tcpstore::Op::GET, {"v1/k"}, {}, 5000), &bytes);
  send(fd, bytes);
  std::vector<uint8_t> in;
  uint16_t version = 0;
  tcpstore::HelloStatus status{};
  std::string message;
  read_until(fd, &in, [&](const uint8_t* d, size_t n) {
    return tcpstore::parse_hello_reply(d, n, &version, &status, &message);
  });
  EXPECT_EQ(version, 1);
  EXPECT_EQ(status, tcpstore::HelloStatus::OK);
  tcpstore::Response set_answer, get_answer;
  read_until(fd, &in, [&](const uint8_t* d, size_t n) {
    return tcpstore::parse_response(tcpstore::Op::SET, d, n, tcpstore::Limits{}, &set_answer);
  });
  read_until(fd, &in, [&](const uint8_t* d, size_t n) {
    return tcpstore::parse_response(tcpstore::Op::GET, d, n, tcpstore::Limits{}, &get_answer);
  });
  EXPECT_EQ(set_answer.status, tcpstore::Status::OK);
  ASSERT_EQ(get_answer.status, tcpstore::Status::OK);
  EXPECT_EQ(get_answer.values.at(0), std::vector<uint8_t>{9});
}

// A quiet set the server refuses has no response to carry the refusal: the
// server closes that connection (answering would pair every later response
// with the wrong request) and serves everyone else.
TEST_F(QuietSetTest, RefusedQuietSetClosesOnlyItsConnection) {
  auto small = std::make_shared<TCPStore>(
      "127.0.0.1", TCPStoreOptions{.port = 0, .is_server = true, .max_value_bytes = 16});
  auto fd = net::connect_with_retry("127.0.0.1", small->port(), Clock::now() + 5s);
  auto bytes = tcpstore::encode_hello("");
  tcpstore::encode_request(request(tcpstore::Op::SET_QUIET, {"big"}, {std::vector<uint8_t>(17, 1)}),
                           &bytes);
  send(fd, bytes);
  uint8_t buf[4096];
  const auto deadline = Clock::now() + 5s;
  EXPECT_THROW(while (true) net::recv_some(fd.get(), buf, sizeof buf, deadline, "server"),
               DistNetworkError);
  small->set("after", std::string("ok"));
  EXPECT_EQ(small->get_string("after"), "ok");
  EXPECT_FALSE(small->check({"big"}));
  // The client library never sends such a set: it asks for an answer.
  TCPStore generous("127.0.0.1", TCPStoreOptions{.port = small->port()});
  EXPECT_THROW(generous.set("big", std::vector<uint8_t>(17, 1)), InvalidArgument);
  generous.set("fine", std::string("yes"));
  EXPECT_EQ(generous.get_string("fine"), "yes");
}

}  // namespace
}  // namespace tutti::testing
