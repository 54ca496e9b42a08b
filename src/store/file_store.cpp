// FileStore: an append-only log of records in one file, shared by processes
// through flock.
//
// File layout: an 8-byte header (kMagic), then records
//   type (1 byte) | key length (u64 LE) | value length (u64 LE) | key | value
// Each process keeps the state in memory and, under the lock, reads only the
// records appended since its last read. User keys are stored as "/" + key, so
// they can never collide with the bookkeeping keys (c10d does the same).
#include "tutti/file_store.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <map>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "core/logging.hpp"
#include "store/store_util.hpp"
#include "tutti/errors.hpp"

namespace tutti {
namespace {

using Bytes = std::vector<uint8_t>;
using std::chrono::milliseconds;

constexpr std::string_view kMagic = "TUTTIFS1";
constexpr size_t kRecordHeaderSize = 1 + 8 + 8;
enum RecordType : uint8_t { kSet = 1, kAppend = 2, kDelete = 3 };

const std::string kUserPrefix = "/";
// Users that opened the store and have not closed it yet.
const std::string kRefCountKey = "refcount";
// Users that have closed the store.
const std::string kCleanupKey = "cleanup";

// Polling intervals of get/wait: short at first so a key set a moment later
// is seen quickly, longer later so many waiters do not hammer the lock.
constexpr milliseconds kFirstPoll{1};
constexpr milliseconds kMaxPoll{20};

std::string user_key(const std::string& key) { return kUserPrefix + key; }

[[noreturn]] void throw_os_error(std::string_view what, const std::string& path) {
  const int err = errno;
  throw DistStoreError(fmt::format("FileStore: {} on '{}' failed: {}", what, path,
                                   std::generic_category().message(err)));
}

void put_u64(Bytes& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

uint64_t get_u64(const uint8_t* in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= static_cast<uint64_t>(in[i]) << (8 * i);
  return value;
}

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    UniqueFd old(std::exchange(fd_, std::exchange(other.fd_, -1)));
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

// An exclusive flock for the guard's lifetime. flock locks belong to the open
// file description, so it excludes other processes (and other FileStores on
// the same path), but not threads sharing this fd: those need the mutex too.
class FileLock {
 public:
  FileLock(int fd, const std::string& path) : fd_(fd) {
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) throw_os_error("flock", path);
    }
  }
  ~FileLock() { ::flock(fd_, LOCK_UN); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

}  // namespace

class FileStore::Impl {
 public:
  // Both locks held and the in-memory state caught up with the file. Every
  // operation runs inside one of these.
  class Locked {
   public:
    explicit Locked(Impl& impl)
        : thread_lock_(impl.mutex_), file_lock_(impl.fd_.get(), impl.path_) {
      impl.refresh();
    }

   private:
    std::lock_guard<std::mutex> thread_lock_;
    FileLock file_lock_;
  };

  Impl(std::string path, int num_workers) : path_(std::move(path)), num_workers_(num_workers) {
    // The last user of a previous store on this path may remove the file
    // between our open() and flock(); we would then register on a file no one
    // else will open. Retry until the locked file is the one at the path.
    constexpr int kMaxReopens = 100;
    for (int attempt = 0;; ++attempt) {
      fd_ = UniqueFd(::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
      if (fd_.get() < 0) throw_os_error("open", path_);
      FileLock lock(fd_.get(), path_);
      if (still_at_path()) {
        check_header();
        refresh();
        add(kRefCountKey, 1);
        return;
      }
      if (attempt == kMaxReopens) {
        throw DistStoreError(
            fmt::format("FileStore: '{}' was removed or replaced {} times while opening it; is "
                        "something else deleting it?",
                        path_, kMaxReopens));
      }
    }
  }

  // Unregisters this user; the last of num_workers removes the file.
  void close() {
    Locked locked(*this);
    const int64_t closed = add(kCleanupKey, 1);
    const int64_t open = add(kRefCountKey, -1);
    if (num_workers_ > 0 && open == 0 && closed >= num_workers_ && still_at_path()) {
      // Under the lock, so no one registers in between; a user blocked in
      // its constructor sees the file gone and creates a new one.
      if (::unlink(path_.c_str()) != 0) throw_os_error("unlink", path_);
    }
  }

  // REQUIRES: Locked.
  const Bytes* find(const std::string& key) const {
    auto it = user_.find(key);
    return it == user_.end() ? nullptr : &it->second;
  }
  size_t num_user_keys() const { return user_.size(); }

  // REQUIRES: Locked. Appends a record and applies it.
  void write(RecordType type, const std::string& stored_key, const Bytes& value) {
    if (file_end_ != pos_) {
      // A torn record: its writer died mid-append while holding the lock
      // (we hold it now, so no one is still writing it). Cut it so our record
      // starts on a record boundary.
      if (::ftruncate(fd_.get(), static_cast<off_t>(pos_)) != 0) throw_os_error("ftruncate", path_);
      file_end_ = pos_;
    }
    Bytes record;
    record.reserve(kRecordHeaderSize + stored_key.size() + value.size());
    record.push_back(type);
    put_u64(record, stored_key.size());
    put_u64(record, value.size());
    record.insert(record.end(), stored_key.begin(), stored_key.end());
    record.insert(record.end(), value.begin(), value.end());
    write_all(record);  // O_APPEND: at the end, which is pos_
    pos_ += record.size();
    file_end_ = pos_;
    apply(type, stored_key, value.data(), value.size());
  }

  // REQUIRES: Locked. c10d's add: the counter as decimal text.
  int64_t add(const std::string& stored_key, int64_t delta) {
    const std::string key = stored_key.substr(prefix_length(stored_key));
    const auto& map = map_for(stored_key);
    auto it = map.find(key);
    const int64_t current = it == map.end() ? 0 : store_util::parse_counter(key, it->second);
    // Wraps like the other stores instead of overflowing (UB).
    const auto result =
        static_cast<int64_t>(static_cast<uint64_t>(current) + static_cast<uint64_t>(delta));
    write(kSet, stored_key, store_util::format_counter(result));
    return result;
  }

  // Polls until all keys exist, then runs on_present under the lock. A
  // timeout <= 0 waits forever, as in the other stores.
  void wait_for(const std::vector<std::string>& keys, milliseconds timeout, const char* operation,
                const std::function<void()>& on_present) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    milliseconds poll = kFirstPoll;
    std::vector<std::string> missing;
    for (;;) {
      {
        Locked locked(*this);
        missing.clear();
        for (const auto& key : keys) {
          if (find(key) == nullptr) missing.push_back(key);
        }
        if (missing.empty()) {
          if (on_present) on_present();
          return;
        }
      }
      std::chrono::steady_clock::duration sleep = poll;
      if (timeout > milliseconds::zero()) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
          throw TimeoutError(
              fmt::format("FileStore {}: timed out after {} ms waiting for keys {} in file '{}'",
                          operation, timeout.count(), store_util::quote_keys(missing), path_));
        }
        sleep = std::min(sleep, deadline - now);
      }
      std::this_thread::sleep_for(sleep);
      poll = std::min(poll * 2, kMaxPoll);
    }
  }

 private:
  static size_t prefix_length(const std::string& stored_key) {
    return stored_key.starts_with(kUserPrefix) ? kUserPrefix.size() : 0;
  }
  std::map<std::string, Bytes>& map_for(const std::string& stored_key) {
    return prefix_length(stored_key) > 0 ? user_ : internal_;
  }

  void apply(uint8_t type, const std::string& stored_key, const uint8_t* value, size_t size) {
    auto& map = map_for(stored_key);
    std::string key = stored_key.substr(prefix_length(stored_key));
    switch (type) {
      case kSet:
        map[std::move(key)].assign(value, value + size);
        break;
      case kAppend: {
        auto& stored = map[std::move(key)];
        stored.insert(stored.end(), value, value + size);
        break;
      }
      case kDelete:
        map.erase(key);
        break;
    }
  }

  // REQUIRES: file lock. Reads the records appended since the last refresh.
  // A torn record at the end (its writer died) is left unread, as if not yet
  // written; the next write cuts it.
  void refresh() {
    const uint64_t size = file_size();
    if (size < pos_) {
      throw DistStoreError(fmt::format(
          "FileStore: '{}' shrank from {} to {} bytes; something other than a FileStore "
          "modified it",
          path_, pos_, size));
    }
    file_end_ = size;
    if (size == pos_) return;
    Bytes data(size - pos_);
    read_at(pos_, data);
    size_t offset = 0;
    while (data.size() - offset >= kRecordHeaderSize) {
      const uint8_t* record = data.data() + offset;
      const uint8_t type = record[0];
      if (type != kSet && type != kAppend && type != kDelete) {
        throw DistStoreError(
            fmt::format("FileStore: '{}' is corrupt: unknown record type {} at offset {}", path_,
                        type, pos_ + offset));
      }
      const uint64_t key_size = get_u64(record + 1);
      const uint64_t value_size = get_u64(record + 9);
      const uint64_t available = data.size() - offset - kRecordHeaderSize;
      if (key_size > available || value_size > available - key_size) break;  // torn
      const uint8_t* key = record + kRecordHeaderSize;
      apply(type, std::string(key, key + key_size), key + key_size, value_size);
      offset += kRecordHeaderSize + key_size + value_size;
    }
    pos_ += offset;
  }

  // REQUIRES: file lock. Validates the header, or writes it into a new file.
  void check_header() {
    const uint64_t size = file_size();
    Bytes head(std::min<uint64_t>(size, kMagic.size()));
    read_at(0, head);
    if (!std::equal(head.begin(), head.end(), kMagic.begin())) {
      throw DistStoreError(fmt::format(
          "FileStore: '{}' is not a tutti FileStore file (it does not start with the store "
          "header); pass the path of a new file or remove this one",
          path_));
    }
    if (size < kMagic.size()) {
      // Empty, or its creator died while writing the header.
      if (::ftruncate(fd_.get(), 0) != 0) throw_os_error("ftruncate", path_);
      write_all(Bytes(kMagic.begin(), kMagic.end()));
    }
    pos_ = file_end_ = kMagic.size();
  }

  struct stat held_stat() const {
    struct stat held = {};
    if (::fstat(fd_.get(), &held) != 0) throw_os_error("fstat", path_);
    return held;
  }
  uint64_t file_size() const { return static_cast<uint64_t>(held_stat().st_size); }

  // Whether the path still names the file we hold open.
  bool still_at_path() const {
    const struct stat held = held_stat();
    struct stat named = {};
    if (::stat(path_.c_str(), &named) != 0) return false;
    return held.st_dev == named.st_dev && held.st_ino == named.st_ino;
  }

  void read_at(uint64_t offset, Bytes& out) const {
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd_.get(), out.data() + done, out.size() - done,
                                static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw_os_error("read", path_);
      if (n == 0) {
        throw DistStoreError(fmt::format("FileStore: '{}' ended at {} bytes while reading {}",
                                         path_, offset + done, offset + out.size()));
      }
      done += static_cast<size_t>(n);
    }
  }

  void write_all(const Bytes& data) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd_.get(), data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw_os_error("write", path_);
      done += static_cast<size_t>(n);
    }
  }

  const std::string path_;
  const int num_workers_;
  std::mutex mutex_;  // excludes threads sharing fd_, which flock does not
  UniqueFd fd_;
  // All below: GUARDED_BY(mutex_ and the file lock).
  uint64_t pos_ = 0;       // end of the last complete record read or written
  uint64_t file_end_ = 0;  // file size at the last refresh; > pos_ if a torn record follows
  std::map<std::string, Bytes> user_;
  std::map<std::string, Bytes> internal_;  // refcount and cleanup
};

FileStore::FileStore(std::string path, int num_workers) : path_(std::move(path)) {
  if (path_.empty()) throw InvalidArgument("FileStore: the path is empty");
  if (num_workers == 0 || num_workers < -1) {
    throw InvalidArgument(fmt::format(
        "FileStore '{}': num_workers is {}; expected a positive count, or -1 to never remove "
        "the file",
        path_, num_workers));
  }
  impl_ = std::make_unique<Impl>(path_, num_workers);
}

FileStore::~FileStore() {
  try {
    impl_->close();
  } catch (const std::exception& e) {
    // A destructor must not throw; the file is left behind.
    TUTTI_LOG(LogLevel::WARNING, -1, "", "FileStore: closing '{}' failed: {}", path_, e.what());
  }
}

void FileStore::set(const std::string& key, const std::vector<uint8_t>& value) {
  Impl::Locked locked(*impl_);
  impl_->write(kSet, user_key(key), value);
}

std::vector<uint8_t> FileStore::get(const std::string& key) {
  Bytes value;
  impl_->wait_for({key}, timeout(), "get", [&] { value = *impl_->find(key); });
  return value;
}

int64_t FileStore::add(const std::string& key, int64_t delta) {
  Impl::Locked locked(*impl_);
  return impl_->add(user_key(key), delta);
}

std::vector<uint8_t> FileStore::compare_set(const std::string& key,
                                            const std::vector<uint8_t>& expected,
                                            const std::vector<uint8_t>& desired) {
  Impl::Locked locked(*impl_);
  auto result = store_util::compare_set_rule(impl_->find(key), expected, desired);
  if (result.store) impl_->write(kSet, user_key(key), desired);
  return result.returned;
}

bool FileStore::delete_key(const std::string& key) {
  Impl::Locked locked(*impl_);
  if (impl_->find(key) == nullptr) return false;
  impl_->write(kDelete, user_key(key), {});
  return true;
}

bool FileStore::check(const std::vector<std::string>& keys) {
  Impl::Locked locked(*impl_);
  return std::all_of(keys.begin(), keys.end(),
                     [&](const std::string& key) { return impl_->find(key) != nullptr; });
}

void FileStore::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  impl_->wait_for(keys, timeout, "wait", nullptr);
}

int64_t FileStore::num_keys() {
  Impl::Locked locked(*impl_);
  return static_cast<int64_t>(impl_->num_user_keys());
}

void FileStore::append(const std::string& key, const std::vector<uint8_t>& value) {
  Impl::Locked locked(*impl_);
  impl_->write(kAppend, user_key(key), value);
}

}  // namespace tutti
