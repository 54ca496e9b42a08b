// The store suite run against every store type, as c10d's StoreTestCommon.
// Each store's test file instantiates it:
//   INSTANTIATE_TEST_SUITE_P(FileStore, StoreTest, ::testing::Values(StoreFactory{...}),
//                            StoreFactoryName);
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "tutti/store.hpp"

namespace tutti::testing {

struct StoreFactory {
  std::string name;
  // A fresh, empty store with its own namespace.
  std::function<std::shared_ptr<Store>()> make;
};

// Names the parameter in test output (instead of dumping its bytes).
inline void PrintTo(const StoreFactory& factory, std::ostream* os) { *os << factory.name; }

inline std::string StoreFactoryName(const ::testing::TestParamInfo<StoreFactory>& info) {
  return info.param.name;
}

class StoreTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override;
  std::shared_ptr<Store> store;
};

}  // namespace tutti::testing
