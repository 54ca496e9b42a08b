// Bad input to the TCPStore server: every case closes or refuses only the
// offending connection, and other clients go on being served.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>
#include <thread>

#include "store/tcp/protocol.hpp"
#include "store/tcp/socket.hpp"
#include "tutti/errors.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server = std::make_shared<TCPStore>(
        "127.0.0.1",
        TCPStoreOptions{.port = 0, .is_server = true, .timeout = 10s, .max_value_bytes = 1 << 20});
    client = std::make_shared<TCPStore>("127.0.0.1",
                                        TCPStoreOptions{.port = server->port(), .timeout = 10s});
  }

  net::Fd raw() {
    return net::connect_with_retry("127.0.0.1", server->port(), net::Clock::now() + 5s);
  }
  static void send(const net::Fd& fd, const std::vector<uint8_t>& data) {
    net::send_all(fd.get(), data.data(), data.size(), net::Clock::now() + 5s, "server");
  }
  static std::vector<uint8_t> hello() { return tcpstore::encode_hello(""); }
  static void u64(std::vector<uint8_t>* out, uint64_t v) {
    for (int i = 0; i < 8; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
  }

  // True if the server closes fd within a few seconds (any bytes it sends
  // first, such as a hello reply, are skipped).
  static bool closed_by_server(const net::Fd& fd) {
    const auto deadline = net::Clock::now() + 5s;
    uint8_t buf[4096];
    try {
      while (true) net::recv_some(fd.get(), buf, sizeof buf, deadline, "server");
    } catch (const DistNetworkError&) {
      return true;
    } catch (const TimeoutError&) {
      return false;
    }
  }

  // Another client's round trips still work.
  void others_still_served(const std::string& tag) {
    client->set("after/" + tag, std::string("ok"));
    EXPECT_EQ(server->get_string("after/" + tag), "ok");
    EXPECT_EQ(client->add("after/count", 1), ++served_);
  }

  std::shared_ptr<TCPStore> server;
  std::shared_ptr<TCPStore> client;
  int64_t served_ = 0;
};

TEST_F(BadInputTest, GarbageBytesCloseThatConnection) {
  auto fd = raw();
  std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  send(fd, std::vector<uint8_t>(http.begin(), http.end()));
  EXPECT_TRUE(closed_by_server(fd));
  others_still_served("garbage");
}

TEST_F(BadInputTest, LengthPrefixOfTwoToTheSixtyThird) {
  auto fd = raw();
  auto bytes = hello();
  u64(&bytes, uint64_t{1} << 63);
  send(fd, bytes);
  EXPECT_TRUE(closed_by_server(fd));
  others_still_served("huge");
}

TEST_F(BadInputTest, TruncatedFrameThenDisconnect) {
  auto fd = raw();
  auto bytes = hello();
  u64(&bytes, 100);
  bytes.insert(bytes.end(), 10, 0x01);
  send(fd, bytes);
  others_still_served("truncated-open");  // the server waits for the rest, others go on
  fd.reset();
  others_still_served("truncated-closed");
}

TEST_F(BadInputTest, SilentClientBlocksNobody) {
  auto silent = raw();  // connects, never says anything
  auto greeted = raw();
  send(greeted, hello());  // says hello, then nothing
  for (int i = 0; i < 20; ++i) others_still_served("silent" + std::to_string(i));
}

TEST_F(BadInputTest, DisconnectMidWait) {
  auto fd = raw();
  auto bytes = hello();
  tcpstore::Request wait;
  wait.op = tcpstore::Op::WAIT;
  wait.keys = {"mid-wait"};
  wait.number = 60000;
  tcpstore::encode_request(wait, &bytes);
  send(fd, bytes);
  std::this_thread::sleep_for(50ms);
  fd.reset();
  std::this_thread::sleep_for(50ms);
  client->set("mid-wait", std::string("x"));  // wakes a watcher whose client is gone
  others_still_served("mid-wait");
}

TEST_F(BadInputTest, WrongMagicAndWrongVersion) {
  auto fd = raw();
  send(fd, {0xde, 0xad, 0xbe, 0xef, 1, 0, 0, 0});
  EXPECT_TRUE(closed_by_server(fd));

  auto old = raw();
  auto bytes = hello();
  bytes[4] = 99;  // version 99
  send(old, bytes);
  std::vector<uint8_t> in;
  uint8_t buf[512];
  const auto deadline = net::Clock::now() + 5s;
  uint16_t version = 0;
  tcpstore::HelloStatus status{};
  std::string message;
  while (true) {
    size_t n = net::recv_some(old.get(), buf, sizeof buf, deadline, "server");
    in.insert(in.end(), buf, buf + n);
    auto r = tcpstore::parse_hello_reply(in.data(), in.size(), &version, &status, &message);
    if (r.status == tcpstore::ParseStatus::kOk) break;
    ASSERT_NE(r.status, tcpstore::ParseStatus::kMalformed) << r.reason;
  }
  EXPECT_EQ(status, tcpstore::HelloStatus::VERSION_MISMATCH);
  EXPECT_NE(message.find("versions 1 to 2, the client 99"), std::string::npos) << message;
  EXPECT_TRUE(closed_by_server(old));
  others_still_served("version");
}

TEST_F(BadInputTest, OversizedValueIsRefusedWithAReason) {
  // The client's own check.
  std::vector<uint8_t> big((1 << 20) + 1, 7);
  EXPECT_THROW(std::make_shared<TCPStore>(
                   "127.0.0.1", TCPStoreOptions{.port = server->port(), .max_value_bytes = 1 << 20})
                   ->set("big", big),
               InvalidArgument);
  // A client with a larger limit than the server: the server refuses the
  // request, says why, and keeps the connection.
  TCPStore generous("127.0.0.1",
                    TCPStoreOptions{.port = server->port(), .max_value_bytes = size_t{8} << 20});
  try {
    generous.set("big", big);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds the limit"), std::string::npos) << e.what();
  }
  generous.set("small", std::string("fine"));
  EXPECT_EQ(generous.get_string("small"), "fine");
  others_still_served("oversized");
}

TEST_F(BadInputTest, UnknownOpIsRefusedAndTheConnectionKept) {
  auto fd = raw();
  auto bytes = hello();
  u64(&bytes, 1);
  bytes.push_back(200);  // no such op
  tcpstore::Request ping;
  ping.op = tcpstore::Op::PING;
  tcpstore::encode_request(ping, &bytes);
  send(fd, bytes);
  std::vector<uint8_t> in;
  uint8_t buf[512];
  const auto deadline = net::Clock::now() + 5s;
  tcpstore::Response first, second;
  size_t offset = 0;
  int answers = 0;
  while (answers < 2) {
    size_t n = net::recv_some(fd.get(), buf, sizeof buf, deadline, "server");
    in.insert(in.end(), buf, buf + n);
    if (offset == 0) {
      uint16_t v;
      tcpstore::HelloStatus s;
      std::string m;
      auto r = tcpstore::parse_hello_reply(in.data(), in.size(), &v, &s, &m);
      if (r.status != tcpstore::ParseStatus::kOk) continue;
      offset = r.consumed;
    }
    while (answers < 2) {
      auto& a = answers == 0 ? first : second;
      auto r = tcpstore::parse_response(tcpstore::Op::PING, in.data() + offset, in.size() - offset,
                                        tcpstore::Limits{}, &a);
      if (r.status != tcpstore::ParseStatus::kOk) break;
      offset += r.consumed;
      ++answers;
    }
  }
  EXPECT_EQ(first.status, tcpstore::Status::INVALID);
  EXPECT_NE(first.error.find("unknown request op 200"), std::string::npos) << first.error;
  EXPECT_EQ(second.status, tcpstore::Status::OK);
  others_still_served("unknown-op");
}

}  // namespace
}  // namespace tutti::testing
