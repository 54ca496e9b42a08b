// PrefixStore: namespaces every key as "<prefix>/<key>" over another store,
// so several groups can share one store without their keys meeting.
#pragma once

#include <memory>

#include "tutti/store.hpp"

namespace tutti {

class PrefixStore : public Store {
 public:
  // Throws InvalidArgument if store is null.
  PrefixStore(std::string prefix, std::shared_ptr<Store> store);

  using Store::set;
  void set(const std::string& key, const std::vector<uint8_t>& value) override;
  std::vector<uint8_t> get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  std::vector<uint8_t> compare_set(const std::string& key, const std::vector<uint8_t>& expected,
                                   const std::vector<uint8_t>& desired) override;
  bool delete_key(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;
  using Store::wait;
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override;
  // Counts the keys of the underlying store, as c10d's PrefixStore does.
  int64_t num_keys() override;
  void append(const std::string& key, const std::vector<uint8_t>& value) override;
  std::vector<std::vector<uint8_t>> multi_get(const std::vector<std::string>& keys) override;
  void multi_set(const std::vector<std::string>& keys,
                 const std::vector<std::vector<uint8_t>>& values) override;
  // Sets the timeout of the underlying store too.
  void set_timeout(std::chrono::milliseconds timeout) override;

  const std::string& prefix() const { return prefix_; }
  const std::shared_ptr<Store>& underlying() const { return store_; }

 private:
  std::string key(const std::string& k) const { return prefix_ + "/" + k; }
  std::vector<std::string> keys(const std::vector<std::string>& ks) const;

  const std::string prefix_;
  const std::shared_ptr<Store> store_;
};

}  // namespace tutti
