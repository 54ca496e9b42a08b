#include "store/store_suite.hpp"

#include <atomic>
#include <thread>

#include "tutti/errors.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<uint8_t>;

Bytes bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

}  // namespace

void StoreTest::SetUp() {
  store = GetParam().make();
  store->set_timeout(5s);
}

TEST_P(StoreTest, SetGetOverwrite) {
  store->set("key", bytes("value"));
  EXPECT_EQ(store->get("key"), bytes("value"));
  store->set("key", bytes("other"));
  EXPECT_EQ(store->get("key"), bytes("other"));
  store->set("empty", Bytes{});
  EXPECT_EQ(store->get("empty"), Bytes{});
}

TEST_P(StoreTest, BinaryKeysAndValues) {
  std::string key("k\0\xff\n/x", 6);
  Bytes value = {0, 255, 10, 0, 13};
  store->set(key, value);
  EXPECT_EQ(store->get(key), value);
  EXPECT_TRUE(store->check({key}));
  EXPECT_FALSE(store->check({std::string("k", 1)}));
}

TEST_P(StoreTest, LargeValue) {
  Bytes value(8 << 20);
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<uint8_t>(i * 31);
  store->set("big", value);
  EXPECT_EQ(store->get("big"), value);
}

TEST_P(StoreTest, AddCountsFromZero) {
  EXPECT_EQ(store->add("counter", 5), 5);
  EXPECT_EQ(store->add("counter", -7), -2);
  EXPECT_EQ(store->get("counter"), bytes("-2"));
  store->set("text", bytes("not a number"));
  EXPECT_THROW(store->add("text", 1), InvalidArgument);
}

TEST_P(StoreTest, CompareSet) {
  // Missing key, empty expected: sets.
  EXPECT_EQ(store->compare_set("k", {}, bytes("a")), bytes("a"));
  // Mismatch: returns the current value, no change.
  EXPECT_EQ(store->compare_set("k", bytes("x"), bytes("b")), bytes("a"));
  EXPECT_EQ(store->get("k"), bytes("a"));
  // Match: swaps.
  EXPECT_EQ(store->compare_set("k", bytes("a"), bytes("b")), bytes("b"));
  EXPECT_EQ(store->get("k"), bytes("b"));
  // Missing key, non-empty expected: returns expected, sets nothing.
  EXPECT_EQ(store->compare_set("missing", bytes("e"), bytes("d")), bytes("e"));
  EXPECT_FALSE(store->check({"missing"}));
}

TEST_P(StoreTest, DeleteCheckAndNumKeys) {
  const int64_t before = store->num_keys();
  store->set("a", bytes("1"));
  store->set("b", bytes("2"));
  EXPECT_EQ(store->num_keys(), before + 2);
  EXPECT_TRUE(store->check({"a", "b"}));
  EXPECT_TRUE(store->delete_key("a"));
  EXPECT_FALSE(store->delete_key("a"));
  EXPECT_FALSE(store->check({"a", "b"}));
  EXPECT_EQ(store->num_keys(), before + 1);
}

TEST_P(StoreTest, AppendCreatesAndExtends) {
  store->append("log", bytes("ab"));
  store->append("log", bytes("cd"));
  EXPECT_EQ(store->get("log"), bytes("abcd"));
}

TEST_P(StoreTest, MultiGetAndMultiSet) {
  store->multi_set({"x", "y"}, {bytes("1"), bytes("22")});
  EXPECT_EQ(store->multi_get({"y", "x"}), (std::vector<Bytes>{bytes("22"), bytes("1")}));
  EXPECT_THROW(store->multi_set({"x"}, {}), InvalidArgument);
}

TEST_P(StoreTest, GetAndWaitTimeOutNamingTheKeys) {
  store->set_timeout(100ms);
  auto start = std::chrono::steady_clock::now();
  try {
    store->get("never_set");
    FAIL() << "expected TimeoutError";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("never_set"), std::string::npos) << e.what();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
  store->set("here", bytes("1"));
  try {
    store->wait({"here", "absent"}, 50ms);
    FAIL() << "expected TimeoutError";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("absent"), std::string::npos) << e.what();
  }
}

TEST_P(StoreTest, WaitWakesWhenAnotherThreadSets) {
  std::thread setter([&] {
    std::this_thread::sleep_for(20ms);
    store->set("late", bytes("v"));
  });
  store->wait({"late"}, 5s);
  EXPECT_EQ(store->get("late"), bytes("v"));
  setter.join();
}

TEST_P(StoreTest, ConcurrentAddsAreAtomic) {
  constexpr int kThreads = 8, kAdds = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kAdds; ++i) store->add("shared", 1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(store->add("shared", 0), kThreads * kAdds);
}

// Stores that are not instantiated in every test binary.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(StoreTest);

}  // namespace tutti::testing
