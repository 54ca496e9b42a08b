// Assertions shared by the tests.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "tutti/errors.hpp"

// Expects `statement` to throw InvalidArgument whose message contains every
// one of the fragments (string literals) that follow.
#define EXPECT_INVALID_ARGUMENT(statement, ...)                            \
  do {                                                                     \
    try {                                                                  \
      statement;                                                           \
      ADD_FAILURE() << "expected InvalidArgument from " #statement;        \
    } catch (const ::tutti::InvalidArgument& e) {                          \
      for (const char* fragment : {__VA_ARGS__}) {                         \
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) \
            << "message '" << e.what() << "' lacks '" << fragment << "'";  \
      }                                                                    \
    }                                                                      \
  } while (0)
