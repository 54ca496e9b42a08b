// Lets gloo's rendezvous run over any tutti Store.
#pragma once

#include <gloo/rendezvous/store.h>

#include <memory>

#include "tutti/store.hpp"

namespace tutti::gloo_backend {

class StoreAdapter : public ::gloo::rendezvous::Store {
 public:
  explicit StoreAdapter(std::shared_ptr<tutti::Store> store) : store_(std::move(store)) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    store_->set(key, std::vector<uint8_t>(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    auto value = store_->get(key);
    return std::vector<char>(value.begin(), value.end());
  }
  void wait(const std::vector<std::string>& keys) override { store_->wait(keys); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    store_->wait(keys, timeout);
  }

 private:
  std::shared_ptr<tutti::Store> store_;
};

}  // namespace tutti::gloo_backend
