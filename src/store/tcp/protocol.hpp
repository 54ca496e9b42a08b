// The TCPStore wire protocol, version 2. Pure encoding and parsing, no I/O,
// so the parser can be fuzzed on its own.
//
// A connection opens with a handshake:
//   client -> server  u32 magic 'TUTS' | u16 version | u16 token length | token
//   server -> client  u32 magic 'TUTS' | u16 version | u8 status | u32 length | message
//                     [version >= 2: u64 max value bytes | u64 max key bytes]
// The server answers with the lower of the two versions (its own when it
// refuses the client's), and the connection speaks that version.
// then carries frames, requests answered in order:
//   request   u64 body length | u8 op     | fields of the op
//   response  u64 body length | u8 status | fields
// Every request gets one response, except SET_QUIET (version 2), which gets
// none. A request that waits for keys (GET, WAIT, MULTI_GET) and is parked
// by the server after one or more SET_QUIET on its connection first gets a
// PARKED response (no fields) and its final response later: every response
// frame tells the client that the server has applied all the connection's
// earlier requests. A version 1 client never sends SET_QUIET, so it never
// sees PARKED; the server serves both versions.
// Integers are little-endian. A key is u32 length + bytes, a value u64 length
// + bytes, a list u32 count + items. A body must be consumed exactly; anything
// else is malformed and closes that connection only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tutti::tcpstore {

inline constexpr uint32_t kMagic = 0x53545554;  // "TUTS" on the wire
inline constexpr uint16_t kVersion = 2;
inline constexpr uint16_t kMinVersion = 1;  // the oldest client the server serves
inline constexpr size_t kHelloBytes = 8;    // magic + version + token length
inline constexpr size_t kFrameHeaderBytes = 8;

enum class Op : uint8_t {
  SET = 1,          // key, value
  GET = 2,          // key, i64 timeout ms           -> value
  ADD = 3,          // key, i64 delta                -> i64
  COMPARE_SET = 4,  // key, value expected, value desired -> value
  DELETE_KEY = 5,   // key                           -> u8
  CHECK = 6,        // keys                          -> u8
  WAIT = 7,         // i64 timeout ms, keys          -> (empty)
  NUM_KEYS = 8,     //                               -> i64
  APPEND = 9,       // key, value
  MULTI_GET = 10,   // i64 timeout ms, keys          -> values
  MULTI_SET = 11,   // keys, values
  PING = 12,        //                               -> (empty)
  SET_QUIET = 13,   // key, value                    -> no response (version 2)
};

const char* to_string(Op op);

enum class Status : uint8_t {
  OK = 0,
  TIMEOUT = 1,  // keys: the ones still missing
  ERROR = 2,    // string: the server failed the request
  INVALID = 3,  // string: the request was wrong (e.g. add on a non-integer)
  PARKED = 4,   // (none): interim; the final response follows (version 2)
};

enum class HelloStatus : uint8_t { OK = 0, VERSION_MISMATCH = 1, BAD_TOKEN = 2 };

struct Limits {
  size_t max_key_bytes = 1 << 20;     // 1 MiB
  size_t max_value_bytes = 64 << 20;  // 64 MiB
  size_t max_keys_per_request = 1 << 16;
  size_t max_token_bytes = 4096;
  // The largest request body: a multi_set of several large values.
  size_t max_frame_bytes() const { return 2 * max_value_bytes + (16 << 20); }
};

struct Request {
  Op op = Op::PING;
  std::vector<std::string> keys;
  std::vector<std::vector<uint8_t>> values;
  int64_t number = 0;  // ADD: delta; GET/WAIT/MULTI_GET: timeout in ms (<= 0: none)
};

struct Response {
  Status status = Status::OK;
  std::vector<std::vector<uint8_t>> values;  // GET, COMPARE_SET: one; MULTI_GET: many
  std::vector<std::string> keys;             // TIMEOUT: the missing keys
  int64_t number = 0;                        // ADD, NUM_KEYS, DELETE_KEY, CHECK
  std::string error;                         // ERROR
};

enum class ParseStatus {
  kOk,
  kNeedMore,
  // A whole frame arrived but its content is wrong (oversized value, unknown
  // op, ...): the server answers INVALID with the reason and reads on.
  kRejected,
  // The stream cannot be delimited any more (bad length prefix, bad hello):
  // the connection is closed.
  kMalformed,
};

struct ParseResult {
  ParseStatus status;
  size_t consumed = 0;  // bytes of the whole frame when kOk or kRejected
  std::string reason;   // when kRejected or kMalformed
};

// The client's hello.
std::vector<uint8_t> encode_hello(const std::string& token);
// Parses a hello from the start of buf. kOk fills version and token.
ParseResult parse_hello(const uint8_t* buf, size_t len, const Limits& limits, uint16_t* version,
                        std::string* token);
// From version 2 the reply carries the server's limits on keys and values.
std::vector<uint8_t> encode_hello_reply(HelloStatus status, const std::string& message,
                                        uint16_t version = kVersion,
                                        const Limits& limits = Limits{});
// kOk fills version, status and message, and (from version 2, when
// server_limits is not null) the server's max_value_bytes and max_key_bytes.
ParseResult parse_hello_reply(const uint8_t* buf, size_t len, uint16_t* version,
                              HelloStatus* status, std::string* message,
                              Limits* server_limits = nullptr);

// Appends one request frame to out.
void encode_request(const Request& request, std::vector<uint8_t>* out);
// Parses one request frame from the start of buf.
ParseResult parse_request(const uint8_t* buf, size_t len, const Limits& limits, Request* out);

// Appends one response frame to out; `op` decides which fields are written.
void encode_response(Op op, const Response& response, std::vector<uint8_t>* out);
ParseResult parse_response(Op op, const uint8_t* buf, size_t len, const Limits& limits,
                           Response* out);

}  // namespace tutti::tcpstore
