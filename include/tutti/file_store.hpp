// FileStore: a store that several processes on one machine (or on a shared
// file system with working POSIX locks) share through one file.
//
// Every operation takes an exclusive lock on the file, catches up with the
// records other processes appended, and appends its own. The last of
// `num_workers` users to close the store removes the file, as c10d's does
// (num_workers = -1: never removed automatically).
#pragma once

#include <memory>
#include <string>

#include "tutti/store.hpp"

namespace tutti {

class FileStore : public Store {
 public:
  // Creates the file if missing. Throws DistStoreError if it cannot be
  // opened or is not a tutti store file.
  FileStore(std::string path, int num_workers);
  ~FileStore() override;

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
  // User keys only (the store's own bookkeeping keys are not counted).
  int64_t num_keys() override;
  void append(const std::string& key, const std::vector<uint8_t>& value) override;

  const std::string& path() const { return path_; }

 private:
  class Impl;
  std::string path_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tutti
