// Parsers of the strings tutti takes from outside the program: init_method
// URLs and the environment variables it reads (MASTER_PORT, RANK, TUTTI_DEBUG,
// TUTTI_GLOO_THREADS, RANK for log lines). Pure functions, kept apart from
// the code that calls getenv() so that the fuzzer (fuzz/env_strings_fuzzer.cpp)
// reaches each of them directly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "tutti/debug.hpp"

namespace tutti::env_parse {

// A decimal integer, all of `text`; InvalidArgument naming `what` (the
// variable) with `example` otherwise.
int64_t parse_int(const std::string& text, const char* what, const char* example);
// The same, within int's range (RANK, WORLD_SIZE): RANK=4294967296 is not
// rank 0.
int parse_int32(const std::string& text, const char* what, const char* example);
// An integer in 1..65535, else InvalidArgument.
uint16_t parse_port(const std::string& text, const char* what, const char* example);
// "tcp://host:port" or "tcp://[v6::addr]:port" to (host, port).
// REQUIRES: url starts with "tcp://". InvalidArgument on anything else.
std::pair<std::string, uint16_t> parse_tcp_url(const std::string& url);
// A TUTTI_DEBUG value: OFF, INFO or DETAIL in any case; nullopt otherwise.
std::optional<DebugLevel> parse_debug_level(std::string text);
// A TUTTI_GLOO_THREADS value: 1 to 64; nullopt otherwise.
std::optional<int> parse_thread_count(const char* text);
// The RANK variable as log lines show it: a non-negative int, else -1.
int parse_log_rank(const char* text);

}  // namespace tutti::env_parse
