// TCPStore: the shared store suite over a server and over a separate client,
// plus what only a network store has: ports, workers, tokens, lost servers,
// thousands of waiting clients, and many processes on one counter.
#include "tutti/tcp_store.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "harness/multiproc.hpp"
#include "store/store_suite.hpp"
#include "store/tcp/protocol.hpp"
#include "store/tcp/socket.hpp"
#include "tutti/errors.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;
std::shared_ptr<TCPStore> make_server(TCPStoreOptions opts = {}) {
  opts.port = 0;
  opts.is_server = true;
  return std::make_shared<TCPStore>("127.0.0.1", opts);
}

std::shared_ptr<TCPStore> make_client(uint16_t port, TCPStoreOptions opts = {}) {
  opts.port = port;
  opts.is_server = false;
  return std::make_shared<TCPStore>("127.0.0.1", opts);
}

// A client that keeps its own server alive, so the suite sees one store.
class ClientWithServer : public TCPStore {
 public:
  explicit ClientWithServer(std::shared_ptr<TCPStore> server)
      : TCPStore("localhost", TCPStoreOptions{.port = server->port()}), server_(server) {}

 private:
  std::shared_ptr<TCPStore> server_;
};

INSTANTIATE_TEST_SUITE_P(
    TCP, StoreTest,
    ::testing::Values(StoreFactory{"TCPStoreServer", [] { return make_server(); }},
                      StoreFactory{
                          "TCPStoreClient",
                          [] { return std::make_shared<ClientWithServer>(make_server()); }}),
    StoreFactoryName);

TEST(TCPStore, PortZeroPicksAFreePort) {
  auto a = make_server();
  auto b = make_server();
  EXPECT_NE(a->port(), 0);
  EXPECT_NE(a->port(), b->port());
  EXPECT_TRUE(a->is_server());
  auto client = make_client(a->port());
  EXPECT_FALSE(client->is_server());
  client->set("k", std::string("v"));
  EXPECT_EQ(a->get_string("k"), "v");
}

TEST(TCPStore, ServerWaitsForItsWorkers) {
  // The server needs two more clients; its constructor blocks until then.
  auto port_holder = make_server();  // reserve nothing: just find a free port number
  const uint16_t port = port_holder->port();
  port_holder.reset();
  std::shared_ptr<TCPStore> server;
  std::thread host([&] {
    server = std::make_shared<TCPStore>(
        "127.0.0.1",
        TCPStoreOptions{.port = port, .is_server = true, .num_workers = 3, .timeout = 20s});
  });
  std::this_thread::sleep_for(100ms);
  auto c1 = make_client(port, {.num_workers = 3, .timeout = 20s});
  auto c2 = make_client(port, {.num_workers = 3, .timeout = 20s});
  host.join();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->num_keys(), 0);  // the join counter is not a user key
}

TEST(TCPStore, WaitWorkersTimesOutNamingTheCount) {
  auto start = std::chrono::steady_clock::now();
  try {
    make_server({.num_workers = 3, .timeout = 300ms});
    FAIL() << "expected TimeoutError";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("1 of 3 workers"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(TCPStore, TokenIsRequiredWhenTheServerHasOne) {
  auto server = make_server({.token = std::string("s3cret")});
  try {
    make_client(server->port(), {.timeout = 2s, .token = std::string("")});
    FAIL() << "a client without the token must be refused";
  } catch (const DistStoreError& e) {
    EXPECT_NE(std::string(e.what()).find("requires a token"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_client(server->port(), {.timeout = 2s, .token = std::string("wrong")}),
               DistStoreError);
  auto good = make_client(server->port(), {.token = std::string("s3cret")});
  good->set("k", std::string("v"));
  EXPECT_EQ(server->get_string("k"), "v");
}

TEST(TCPStore, UnreachableServerIsANetworkErrorNamingIt) {
  auto probe = make_server();
  const uint16_t port = probe->port();
  probe.reset();  // nothing listens there now
  auto start = std::chrono::steady_clock::now();
  try {
    make_client(port, {.timeout = 500ms});
    FAIL() << "expected DistNetworkError";
  } catch (const DistNetworkError& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos)
        << e.what();
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 400ms);  // it retried until the timeout
  EXPECT_LT(elapsed, 5s);
}

TEST(TCPStore, LostServerIsANetworkErrorNamingIt) {
  auto server = make_server();
  auto client = make_client(server->port(), {.timeout = 1s});
  client->set("k", std::string("v"));
  const uint16_t port = server->port();
  server.reset();
  try {
    client->get("k");
    FAIL() << "expected DistNetworkError";
  } catch (const DistNetworkError& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(port)), std::string::npos) << e.what();
  }
}

TEST(TCPStore, ServerGoingAwayWakesAWaitingClient) {
  auto server = make_server();
  auto client = make_client(server->port(), {.timeout = 60s});
  std::thread killer([&] {
    std::this_thread::sleep_for(100ms);
    server.reset();
  });
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(client->wait({"never"}), DistNetworkError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  killer.join();
}

TEST(TCPStore, ClientRecoversAfterAClientSideTimeout) {
  auto server = make_server();
  auto client = make_client(server->port());
  EXPECT_THROW(client->wait({"late"}, 50ms), TimeoutError);
  server->set("late", std::string("1"));
  client->wait({"late"}, 1s);
  EXPECT_EQ(client->get_string("late"), "1");
}

// Raw protocol sockets: each opens a connection and waits on one key; one
// set must wake them all, and none blocks the loop for the others.
TEST(TCPStore, ThousandClientsWaitingAtOnce) {
  auto server = make_server();
  constexpr int kClients = 1000;
  std::vector<net::Fd> fds;
  std::vector<uint8_t> request = tcpstore::encode_hello("");
  tcpstore::Request wait;
  wait.op = tcpstore::Op::WAIT;
  wait.keys = {"go"};
  wait.number = 60000;
  tcpstore::encode_request(wait, &request);
  const auto deadline = net::Clock::now() + 30s;
  for (int i = 0; i < kClients; ++i) {
    fds.push_back(net::connect_with_retry("127.0.0.1", server->port(), deadline));
    net::send_all(fds.back().get(), request.data(), request.size(), deadline, "server");
  }
  // Other clients are served while the thousand wait.
  EXPECT_EQ(server->add("busy", 1), 1);
  server->set("go", std::string("now"));
  int woken = 0;
  for (auto& fd : fds) {
    std::vector<uint8_t> in;
    while (true) {
      uint8_t buf[256];
      in.insert(in.end(), buf, buf + net::recv_some(fd.get(), buf, sizeof buf, deadline, "server"));
      uint16_t version;
      tcpstore::HelloStatus status;
      std::string message;
      auto hello = tcpstore::parse_hello_reply(in.data(), in.size(), &version, &status, &message);
      if (hello.status != tcpstore::ParseStatus::kOk) continue;
      tcpstore::Response a;
      auto r = tcpstore::parse_response(tcpstore::Op::WAIT, in.data() + hello.consumed,
                                        in.size() - hello.consumed, tcpstore::Limits{}, &a);
      if (r.status == tcpstore::ParseStatus::kOk) {
        woken += a.status == tcpstore::Status::OK;
        break;
      }
    }
  }
  EXPECT_EQ(woken, kClients);
}

TEST(TCPStore, SixteenProcessesAddToOneCounter) {
  constexpr int kRanks = 16, kAdds = 1000;
  run_ranks(kRanks,
            [](const RankContext& ctx) {
              TCPStoreOptions opts{.port = ctx.port,
                                   .is_server = ctx.rank == 0,
                                   .num_workers = ctx.world_size,
                                   .timeout = 60s};
              TCPStore store("127.0.0.1", opts);
              for (int i = 0; i < kAdds; ++i) store.add("counter", 1);
              store.add("done", 1);
              // Everyone waits for everyone, so the server (rank 0) outlives the adds.
              store.set("finished/" + std::to_string(ctx.rank), std::string("1"));
              std::vector<std::string> all;
              for (int r = 0; r < ctx.world_size; ++r)
                all.push_back("finished/" + std::to_string(r));
              store.wait(all);
              EXPECT_EQ(store.add("counter", 0), kRanks * kAdds);
              store.add("checked", 1);
              if (ctx.rank == 0) {
                // Keep serving until every rank has read the counter.
                while (store.add("checked", 0) < ctx.world_size) std::this_thread::sleep_for(5ms);
              }
            },
            {.deadline = 120s});
}

}  // namespace
}  // namespace tutti::testing
