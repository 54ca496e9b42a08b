// libFuzzer target for the TCPStore server's input: the hello and request
// frames a client sends, and the response frames a client parses.
//
// Besides "no crash, no sanitizer report", it checks that the encoding is
// canonical: a frame that parses re-encodes to exactly the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "store/tcp/protocol.hpp"

using namespace tutti::tcpstore;

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

void fuzz_requests(const uint8_t* data, size_t size, const Limits& limits) {
  // The server parses frames back to back from one buffer.
  size_t offset = 0;
  while (offset < size) {
    Request q;
    ParseResult r = parse_request(data + offset, size - offset, limits, &q);
    if (r.status == ParseStatus::kNeedMore || r.status == ParseStatus::kMalformed) return;
    require(r.consumed >= kFrameHeaderBytes && r.consumed <= size - offset);
    if (r.status == ParseStatus::kOk) {
      std::vector<uint8_t> again;
      encode_request(q, &again);
      require(again.size() == r.consumed);
      require(std::memcmp(again.data(), data + offset, r.consumed) == 0);
    }
    offset += r.consumed;
  }
}

void fuzz_responses(const uint8_t* data, size_t size, const Limits& limits) {
  for (uint8_t op = 1; op <= static_cast<uint8_t>(Op::PING); ++op) {
    Response a;
    ParseResult r = parse_response(static_cast<Op>(op), data, size, limits, &a);
    if (r.status != ParseStatus::kOk) continue;
    std::vector<uint8_t> again;
    encode_response(static_cast<Op>(op), a, &again);
    require(again.size() == r.consumed);
    require(std::memcmp(again.data(), data, r.consumed) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Limits small;  // small limits reach the "too large" paths with small inputs
  small.max_key_bytes = 64;
  small.max_value_bytes = 256;
  small.max_keys_per_request = 8;
  small.max_token_bytes = 16;
  const Limits normal;

  uint16_t version = 0;
  std::string token;
  ParseResult hello = parse_hello(data, size, normal, &version, &token);
  if (hello.status == ParseStatus::kOk) {
    require(hello.consumed == kHelloBytes + token.size());
    fuzz_requests(data + hello.consumed, size - hello.consumed, normal);
  }
  HelloStatus status;
  std::string message;
  Limits announced;
  ParseResult reply = parse_hello_reply(data, size, &version, &status, &message, &announced);
  if (reply.status == ParseStatus::kOk) {
    require(reply.consumed == 11 + message.size() + (version >= 2 ? 16 : 0));
  }

  fuzz_requests(data, size, normal);
  fuzz_requests(data, size, small);
  fuzz_responses(data, size, small);
  return 0;
}
