// Writes seed inputs for the store frame fuzzer: one valid frame of every
// request op and response kind, so the fuzzer starts from the real grammar.
//   corpus_seeds DIR
#include <cstdio>
#include <string>
#include <vector>

#include "store/tcp/protocol.hpp"

using namespace tutti::tcpstore;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  int n = 0;
  auto write = [&](const std::vector<uint8_t>& bytes) {
    std::string path = dir + "/seed-" + std::to_string(n++);
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return;
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  };
  for (uint8_t op = 1; op <= static_cast<uint8_t>(Op::SET_QUIET); ++op) {
    Request q;
    q.op = static_cast<Op>(op);
    q.keys = {"key", std::string("\0bin", 4)};
    q.values = {{1, 2, 3}, {}};
    q.number = 42;
    if (q.op == Op::SET || q.op == Op::SET_QUIET || q.op == Op::APPEND || q.op == Op::GET ||
        q.op == Op::ADD || q.op == Op::DELETE_KEY || q.op == Op::COMPARE_SET) {
      q.keys.resize(1);
    }
    std::vector<uint8_t> frame = encode_hello("token");
    encode_request(q, &frame);
    write(frame);
    Response a;
    a.values = {{9, 9}};
    a.number = 7;
    std::vector<uint8_t> reply;
    encode_response(q.op, a, &reply);
    write(reply);
  }
  Response timeout;
  timeout.status = Status::TIMEOUT;
  timeout.keys = {"missing"};
  std::vector<uint8_t> reply;
  encode_response(Op::WAIT, timeout, &reply);
  write(reply);
  Response parked;
  parked.status = Status::PARKED;
  reply.clear();
  encode_response(Op::GET, parked, &reply);
  write(reply);
  write(encode_hello_reply(HelloStatus::BAD_TOKEN, "no"));
  write(encode_hello_reply(HelloStatus::OK, "", 1));
  std::printf("wrote %d seeds to %s\n", n, dir.c_str());
  return 0;
}
