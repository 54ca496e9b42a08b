#include "tutti/prefix_store.hpp"

#include "tutti/errors.hpp"

namespace tutti {
namespace {

std::shared_ptr<Store> require(std::shared_ptr<Store> store) {
  if (!store) throw InvalidArgument("PrefixStore: the underlying store is null");
  return store;
}

}  // namespace

PrefixStore::PrefixStore(std::string prefix, std::shared_ptr<Store> store)
    : Store(require(store)->timeout()), prefix_(std::move(prefix)), store_(std::move(store)) {}

std::vector<std::string> PrefixStore::keys(const std::vector<std::string>& ks) const {
  std::vector<std::string> out;
  out.reserve(ks.size());
  for (const auto& k : ks) out.push_back(key(k));
  return out;
}

void PrefixStore::set(const std::string& k, const std::vector<uint8_t>& value) {
  store_->set(key(k), value);
}

std::vector<uint8_t> PrefixStore::get(const std::string& k) { return store_->get(key(k)); }

int64_t PrefixStore::add(const std::string& k, int64_t delta) { return store_->add(key(k), delta); }

std::vector<uint8_t> PrefixStore::compare_set(const std::string& k,
                                              const std::vector<uint8_t>& expected,
                                              const std::vector<uint8_t>& desired) {
  return store_->compare_set(key(k), expected, desired);
}

bool PrefixStore::delete_key(const std::string& k) { return store_->delete_key(key(k)); }

bool PrefixStore::check(const std::vector<std::string>& ks) { return store_->check(keys(ks)); }

void PrefixStore::wait(const std::vector<std::string>& ks, std::chrono::milliseconds timeout) {
  store_->wait(keys(ks), timeout);
}

int64_t PrefixStore::num_keys() { return store_->num_keys(); }

void PrefixStore::append(const std::string& k, const std::vector<uint8_t>& value) {
  store_->append(key(k), value);
}

std::vector<std::vector<uint8_t>> PrefixStore::multi_get(const std::vector<std::string>& ks) {
  return store_->multi_get(keys(ks));
}

void PrefixStore::multi_set(const std::vector<std::string>& ks,
                            const std::vector<std::vector<uint8_t>>& values) {
  store_->multi_set(keys(ks), values);
}

void PrefixStore::set_timeout(std::chrono::milliseconds timeout) {
  Store::set_timeout(timeout);
  store_->set_timeout(timeout);
}

}  // namespace tutti
