#include "store/tcp/protocol.hpp"

#include <fmt/format.h>

#include <cstring>

namespace tutti::tcpstore {
namespace {

// ------------------------------------------------------------- encoding

class Writer {
 public:
  explicit Writer(std::vector<uint8_t>* out) : out_(out) {}

  template <class T>
  void integer(T value) {
    using U = std::make_unsigned_t<T>;
    auto u = static_cast<U>(value);
    for (size_t i = 0; i < sizeof(T); ++i) out_->push_back(static_cast<uint8_t>(u >> (8 * i)));
  }
  void bytes(const void* data, size_t len) {
    const auto* p = static_cast<const uint8_t*>(data);
    out_->insert(out_->end(), p, p + len);
  }
  void key(const std::string& k) {
    integer<uint32_t>(static_cast<uint32_t>(k.size()));
    bytes(k.data(), k.size());
  }
  void value(const std::vector<uint8_t>& v) {
    integer<uint64_t>(v.size());
    bytes(v.data(), v.size());
  }
  void keys(const std::vector<std::string>& ks) {
    integer<uint32_t>(static_cast<uint32_t>(ks.size()));
    for (const auto& k : ks) key(k);
  }
  void values(const std::vector<std::vector<uint8_t>>& vs) {
    integer<uint32_t>(static_cast<uint32_t>(vs.size()));
    for (const auto& v : vs) value(v);
  }

  // A frame: reserves the length prefix, filled in by end_frame().
  size_t begin_frame() {
    size_t at = out_->size();
    integer<uint64_t>(0);
    return at;
  }
  void end_frame(size_t at) {
    uint64_t body = out_->size() - at - kFrameHeaderBytes;
    for (size_t i = 0; i < 8; ++i) (*out_)[at + i] = static_cast<uint8_t>(body >> (8 * i));
  }

 private:
  std::vector<uint8_t>* out_;
};

// ------------------------------------------------------------- decoding

// Reads fields from one complete body; the first failure sticks and is
// reported by ok()/reason().
class Reader {
 public:
  Reader(const uint8_t* data, size_t len, const Limits& limits)
      : p_(data), end_(data + len), limits_(limits) {}

  template <class T>
  T integer() {
    using U = std::make_unsigned_t<T>;
    if (!need(sizeof(T), "integer")) return T{};
    U u = 0;
    for (size_t i = 0; i < sizeof(T); ++i) u |= static_cast<U>(static_cast<U>(p_[i]) << (8 * i));
    p_ += sizeof(T);
    return static_cast<T>(u);
  }
  std::string key() {
    auto len = integer<uint32_t>();
    if (!ok_) return {};
    if (len > limits_.max_key_bytes) {
      fail(fmt::format("key of {} bytes exceeds the limit of {}", len, limits_.max_key_bytes));
      return {};
    }
    if (!need(len, "key")) return {};
    std::string k(reinterpret_cast<const char*>(p_), len);
    p_ += len;
    return k;
  }
  std::vector<uint8_t> value() {
    auto len = integer<uint64_t>();
    if (!ok_) return {};
    if (len > limits_.max_value_bytes) {
      fail(fmt::format("value of {} bytes exceeds the limit of {}", len, limits_.max_value_bytes));
      return {};
    }
    if (!need(len, "value")) return {};
    std::vector<uint8_t> v(p_, p_ + len);
    p_ += len;
    return v;
  }
  uint32_t count() {
    auto n = integer<uint32_t>();
    if (ok_ && n > limits_.max_keys_per_request) {
      fail(
          fmt::format("list of {} items exceeds the limit of {}", n, limits_.max_keys_per_request));
      return 0;
    }
    return n;
  }
  std::vector<std::string> keys() {
    std::vector<std::string> ks;
    uint32_t n = count();
    for (uint32_t i = 0; i < n && ok_; ++i) ks.push_back(key());
    return ks;
  }
  std::vector<std::vector<uint8_t>> values() {
    std::vector<std::vector<uint8_t>> vs;
    uint32_t n = count();
    for (uint32_t i = 0; i < n && ok_; ++i) vs.push_back(value());
    return vs;
  }
  std::string text() {
    auto len = integer<uint32_t>();
    if (!ok_ || !need(len, "string")) return {};
    std::string s(reinterpret_cast<const char*>(p_), len);
    p_ += len;
    return s;
  }

  bool fail(std::string reason) {
    if (ok_) {
      ok_ = false;
      reason_ = std::move(reason);
    }
    return false;
  }
  // Succeeds only if everything was read and nothing is left over.
  bool finish() {
    if (ok_ && p_ != end_) fail(fmt::format("{} unexpected trailing bytes", end_ - p_));
    return ok_;
  }
  const std::string& reason() const { return reason_; }

 private:
  bool need(uint64_t n, const char* what) {
    if (!ok_) return false;
    if (static_cast<uint64_t>(end_ - p_) < n) {
      return fail(fmt::format("{} runs past the end of the frame", what));
    }
    return true;
  }

  const uint8_t* p_;
  const uint8_t* end_;
  const Limits& limits_;
  bool ok_ = true;
  std::string reason_;
};

ParseResult need_more() { return {ParseStatus::kNeedMore, 0, {}}; }
ParseResult parsed(size_t consumed) { return {ParseStatus::kOk, consumed, {}}; }
ParseResult malformed(std::string reason) {
  return {ParseStatus::kMalformed, 0, std::move(reason)};
}

uint32_t load_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

uint64_t load_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// Checks the length prefix of a frame at buf; on kOk, *body_len is set.
ParseResult frame_header(const uint8_t* buf, size_t len, const Limits& limits, uint64_t* body_len) {
  if (len < kFrameHeaderBytes) return need_more();
  *body_len = load_u64(buf);
  if (*body_len == 0) return malformed("empty frame");
  if (*body_len > limits.max_frame_bytes()) {
    return malformed(fmt::format("frame length {} exceeds the limit of {} bytes", *body_len,
                                 limits.max_frame_bytes()));
  }
  if (len - kFrameHeaderBytes < *body_len) return need_more();
  return parsed(kFrameHeaderBytes + static_cast<size_t>(*body_len));
}

bool valid_op(uint8_t op) { return op >= 1 && op <= static_cast<uint8_t>(Op::SET_QUIET); }

}  // namespace

const char* to_string(Op op) {
  switch (op) {
    case Op::SET:
      return "set";
    case Op::GET:
      return "get";
    case Op::ADD:
      return "add";
    case Op::COMPARE_SET:
      return "compare_set";
    case Op::DELETE_KEY:
      return "delete_key";
    case Op::CHECK:
      return "check";
    case Op::WAIT:
      return "wait";
    case Op::NUM_KEYS:
      return "num_keys";
    case Op::APPEND:
      return "append";
    case Op::MULTI_GET:
      return "multi_get";
    case Op::MULTI_SET:
      return "multi_set";
    case Op::PING:
      return "ping";
    case Op::SET_QUIET:
      return "set";
  }
  return "unknown";
}

std::vector<uint8_t> encode_hello(const std::string& token) {
  std::vector<uint8_t> out;
  Writer w(&out);
  w.integer<uint32_t>(kMagic);
  w.integer<uint16_t>(kVersion);
  w.integer<uint16_t>(static_cast<uint16_t>(token.size()));
  w.bytes(token.data(), token.size());
  return out;
}

ParseResult parse_hello(const uint8_t* buf, size_t len, const Limits& limits, uint16_t* version,
                        std::string* token) {
  if (len < 4) return need_more();
  const uint32_t magic = load_u32(buf);
  if (magic != kMagic) {
    return malformed(fmt::format("not a tutti store client (magic 0x{:08x})", magic));
  }
  if (len < kHelloBytes) return need_more();
  *version = static_cast<uint16_t>(buf[4] | (buf[5] << 8));
  const size_t token_len = static_cast<size_t>(buf[6] | (buf[7] << 8));
  if (token_len > limits.max_token_bytes) {
    return malformed(fmt::format("token of {} bytes is too long", token_len));
  }
  if (len < kHelloBytes + token_len) return need_more();
  token->assign(reinterpret_cast<const char*>(buf + kHelloBytes), token_len);
  return parsed(kHelloBytes + token_len);
}

std::vector<uint8_t> encode_hello_reply(HelloStatus status, const std::string& message,
                                        uint16_t version, const Limits& limits) {
  std::vector<uint8_t> out;
  Writer w(&out);
  w.integer<uint32_t>(kMagic);
  w.integer<uint16_t>(version);
  w.integer<uint8_t>(static_cast<uint8_t>(status));
  w.integer<uint32_t>(static_cast<uint32_t>(message.size()));
  w.bytes(message.data(), message.size());
  if (version >= 2) {
    w.integer<uint64_t>(limits.max_value_bytes);
    w.integer<uint64_t>(limits.max_key_bytes);
  }
  return out;
}

ParseResult parse_hello_reply(const uint8_t* buf, size_t len, uint16_t* version,
                              HelloStatus* status, std::string* message, Limits* server_limits) {
  constexpr size_t kFixed = 4 + 2 + 1 + 4;
  if (len < 4) return need_more();
  const uint32_t magic = load_u32(buf);
  if (magic != kMagic) {
    return malformed(fmt::format("the server is not a tutti store (magic 0x{:08x})", magic));
  }
  if (len < kFixed) return need_more();
  *version = static_cast<uint16_t>(buf[4] | (buf[5] << 8));
  if (buf[6] > static_cast<uint8_t>(HelloStatus::BAD_TOKEN)) {
    return malformed(fmt::format("unknown hello status {}", buf[6]));
  }
  *status = static_cast<HelloStatus>(buf[6]);
  const uint32_t msg_len = load_u32(buf + 7);
  if (msg_len > 65536) return malformed("hello reply message too long");
  const size_t limits_len = *version >= 2 ? 16 : 0;
  if (len < kFixed + msg_len + limits_len) return need_more();
  message->assign(reinterpret_cast<const char*>(buf + kFixed), msg_len);
  if (limits_len > 0 && server_limits != nullptr) {
    server_limits->max_value_bytes = static_cast<size_t>(load_u64(buf + kFixed + msg_len));
    server_limits->max_key_bytes = static_cast<size_t>(load_u64(buf + kFixed + msg_len + 8));
  }
  return parsed(kFixed + msg_len + limits_len);
}

void encode_request(const Request& q, std::vector<uint8_t>* out) {
  Writer w(out);
  size_t frame = w.begin_frame();
  w.integer<uint8_t>(static_cast<uint8_t>(q.op));
  switch (q.op) {
    case Op::SET:
    case Op::SET_QUIET:
    case Op::APPEND:
      w.key(q.keys.at(0));
      w.value(q.values.at(0));
      break;
    case Op::GET:
    case Op::ADD:
      w.key(q.keys.at(0));
      w.integer<int64_t>(q.number);
      break;
    case Op::COMPARE_SET:
      w.key(q.keys.at(0));
      w.value(q.values.at(0));
      w.value(q.values.at(1));
      break;
    case Op::DELETE_KEY:
      w.key(q.keys.at(0));
      break;
    case Op::CHECK:
      w.keys(q.keys);
      break;
    case Op::WAIT:
    case Op::MULTI_GET:
      w.integer<int64_t>(q.number);
      w.keys(q.keys);
      break;
    case Op::MULTI_SET:
      w.keys(q.keys);
      w.values(q.values);
      break;
    case Op::NUM_KEYS:
    case Op::PING:
      break;
  }
  w.end_frame(frame);
}

ParseResult parse_request(const uint8_t* buf, size_t len, const Limits& limits, Request* out) {
  uint64_t body_len = 0;
  ParseResult header = frame_header(buf, len, limits, &body_len);
  if (header.status != ParseStatus::kOk) return header;
  Reader r(buf + kFrameHeaderBytes, static_cast<size_t>(body_len), limits);
  auto op = r.integer<uint8_t>();
  if (!valid_op(op)) {
    return {ParseStatus::kRejected, header.consumed, fmt::format("unknown request op {}", op)};
  }
  *out = Request{};
  out->op = static_cast<Op>(op);
  switch (out->op) {
    case Op::SET:
    case Op::SET_QUIET:
    case Op::APPEND:
      out->keys.push_back(r.key());
      out->values.push_back(r.value());
      break;
    case Op::GET:
    case Op::ADD:
      out->keys.push_back(r.key());
      out->number = r.integer<int64_t>();
      break;
    case Op::COMPARE_SET:
      out->keys.push_back(r.key());
      out->values.push_back(r.value());
      out->values.push_back(r.value());
      break;
    case Op::DELETE_KEY:
      out->keys.push_back(r.key());
      break;
    case Op::CHECK:
      out->keys = r.keys();
      break;
    case Op::WAIT:
    case Op::MULTI_GET:
      out->number = r.integer<int64_t>();
      out->keys = r.keys();
      break;
    case Op::MULTI_SET:
      out->keys = r.keys();
      out->values = r.values();
      if (out->keys.size() != out->values.size()) {
        r.fail(fmt::format("multi_set with {} keys but {} values", out->keys.size(),
                           out->values.size()));
      }
      break;
    case Op::NUM_KEYS:
    case Op::PING:
      break;
  }
  if (!r.finish()) {
    return {ParseStatus::kRejected, header.consumed,
            fmt::format("malformed {} request: {}", to_string(out->op), r.reason())};
  }
  return header;
}

void encode_response(Op op, const Response& a, std::vector<uint8_t>* out) {
  Writer w(out);
  size_t frame = w.begin_frame();
  w.integer<uint8_t>(static_cast<uint8_t>(a.status));
  if (a.status == Status::TIMEOUT) {
    w.keys(a.keys);
  } else if (a.status == Status::ERROR || a.status == Status::INVALID) {
    w.integer<uint32_t>(static_cast<uint32_t>(a.error.size()));
    w.bytes(a.error.data(), a.error.size());
  } else if (a.status == Status::PARKED) {
    // No fields.
  } else {
    switch (op) {
      case Op::GET:
      case Op::COMPARE_SET:
        w.value(a.values.at(0));
        break;
      case Op::MULTI_GET:
        w.values(a.values);
        break;
      case Op::ADD:
      case Op::NUM_KEYS:
        w.integer<int64_t>(a.number);
        break;
      case Op::DELETE_KEY:
      case Op::CHECK:
        w.integer<uint8_t>(a.number != 0 ? 1 : 0);
        break;
      default:
        break;
    }
  }
  w.end_frame(frame);
}

ParseResult parse_response(Op op, const uint8_t* buf, size_t len, const Limits& limits,
                           Response* out) {
  uint64_t body_len = 0;
  ParseResult header = frame_header(buf, len, limits, &body_len);
  if (header.status != ParseStatus::kOk) return header;
  Reader r(buf + kFrameHeaderBytes, static_cast<size_t>(body_len), limits);
  auto status = r.integer<uint8_t>();
  if (status > static_cast<uint8_t>(Status::PARKED)) {
    return malformed(fmt::format("unknown response status {}", status));
  }
  *out = Response{};
  out->status = static_cast<Status>(status);
  if (out->status == Status::TIMEOUT) {
    out->keys = r.keys();
  } else if (out->status == Status::ERROR || out->status == Status::INVALID) {
    out->error = r.text();
  } else if (out->status == Status::PARKED) {
    // No fields.
  } else {
    switch (op) {
      case Op::GET:
      case Op::COMPARE_SET:
        out->values.push_back(r.value());
        break;
      case Op::MULTI_GET:
        out->values = r.values();
        break;
      case Op::ADD:
      case Op::NUM_KEYS:
        out->number = r.integer<int64_t>();
        break;
      case Op::DELETE_KEY:
      case Op::CHECK:
        out->number = r.integer<uint8_t>();
        if (out->number > 1) r.fail(fmt::format("boolean byte {} is not 0 or 1", out->number));
        break;
      default:
        break;
    }
  }
  if (!r.finish()) {
    return malformed(fmt::format("malformed {} response: {}", to_string(op), r.reason()));
  }
  return header;
}

}  // namespace tutti::tcpstore
