// HashStore and PrefixStore against the shared store suite, and what is
// particular to PrefixStore.
#include "tutti/hash_store.hpp"

#include "store/store_suite.hpp"
#include "tutti/errors.hpp"
#include "tutti/prefix_store.hpp"

namespace tutti::testing {
namespace {

using Bytes = std::vector<uint8_t>;
Bytes bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

INSTANTIATE_TEST_SUITE_P(
    InProcess, StoreTest,
    ::testing::Values(StoreFactory{"HashStore", [] { return std::make_shared<HashStore>(); }},
                      StoreFactory{"PrefixStore",
                                   [] {
                                     return std::make_shared<PrefixStore>(
                                         "p", std::make_shared<HashStore>());
                                   }}),
    StoreFactoryName);
TEST(PrefixStore, NamespacesKeys) {
  auto base = std::make_shared<HashStore>();
  PrefixStore a("a", base), b("b", base);
  a.set("k", bytes("1"));
  b.set("k", bytes("2"));
  EXPECT_EQ(a.get("k"), bytes("1"));
  EXPECT_EQ(base->get("b/k"), bytes("2"));
  PrefixStore nested("inner", std::make_shared<PrefixStore>("outer", base));
  nested.set("k", bytes("3"));
  EXPECT_EQ(base->get("outer/inner/k"), bytes("3"));
  EXPECT_THROW(PrefixStore("x", nullptr), InvalidArgument);
}

}  // namespace
}  // namespace tutti::testing
