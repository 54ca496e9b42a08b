#include "core/logging.hpp"

#include <gtest/gtest.h>

namespace tutti {
namespace {

class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = log_level(); }
  void TearDown() override { set_log_level(saved_); }
  LogLevel saved_ = LogLevel::WARNING;
};

TEST_F(LoggingTest, LinesNameRankAndGroup) {
  std::string line = logging::format_line(LogLevel::INFO, 3, "default/2", "connected");
  EXPECT_EQ(line.rfind("[tutti I ", 0), 0u) << line;
  EXPECT_NE(line.find(" rank 3 group default/2] connected"), std::string::npos) << line;
  std::string no_group = logging::format_line(LogLevel::ERROR, 0, "", "x");
  EXPECT_NE(no_group.find("rank 0 group -] x"), std::string::npos) << no_group;
}

TEST_F(LoggingTest, ParsesLevels) {
  LogLevel level;
  ASSERT_TRUE(logging::parse_level("debug", &level));
  EXPECT_EQ(level, LogLevel::DEBUG);
  ASSERT_TRUE(logging::parse_level("WARN", &level));
  EXPECT_EQ(level, LogLevel::WARNING);
  ASSERT_TRUE(logging::parse_level("4", &level));
  EXPECT_EQ(level, LogLevel::ERROR);
  EXPECT_FALSE(logging::parse_level("loud", &level));
}

TEST_F(LoggingTest, RespectsTheLevelAndSkipsDisabledArguments) {
  set_log_level(LogLevel::WARNING);
  int evaluated = 0;
  auto count = [&] { return ++evaluated; };
  ::testing::internal::CaptureStderr();
  TUTTI_LOG(LogLevel::INFO, 1, "g", "hidden {}", count());
  TUTTI_LOG(LogLevel::WARNING, 1, "g", "shown {}", count());
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(evaluated, 1);
  EXPECT_EQ(out.find("hidden"), std::string::npos);
  EXPECT_NE(out.find("rank 1 group g] shown 1\n"), std::string::npos) << out;
  set_log_level(LogLevel::OFF);
  EXPECT_FALSE(logging::enabled(LogLevel::ERROR));
}

}  // namespace
}  // namespace tutti
