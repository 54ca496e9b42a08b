// FileStore against the shared store suite, and what is particular to it:
// sharing through the file, removal by the last user, foreign and torn files,
// and real processes contending for the lock.
#include "tutti/file_store.hpp"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <system_error>
#include <thread>

#include "harness/multiproc.hpp"
#include "store/store_suite.hpp"
#include "tutti/errors.hpp"

namespace tutti::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Bytes = std::vector<uint8_t>;

Bytes bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

// A fresh directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string name = (fs::temp_directory_path() / "tutti-file-store-XXXXXX").string();
    if (::mkdtemp(name.data()) == nullptr) {
      throw std::system_error(errno, std::generic_category(), "mkdtemp " + name);
    }
    path_ = name;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// One user (num_workers 1), so closing the store also exercises removal.
std::shared_ptr<Store> make_file_store() {
  auto dir = std::make_shared<TempDir>();
  auto store = std::make_shared<FileStore>(dir->file("store"), 1);
  // Keeps the directory until the store is gone, then removes it.
  return std::shared_ptr<Store>(store.get(), [store, dir](Store*) mutable {
    store.reset();
    dir.reset();
  });
}

INSTANTIATE_TEST_SUITE_P(File, StoreTest,
                         ::testing::Values(StoreFactory{"FileStore", make_file_store}),
                         StoreFactoryName);

TEST(FileStore, TwoObjectsOnOnePathSeeEachOthersKeys) {
  TempDir dir;
  const std::string path = dir.file("store");
  FileStore a(path, -1), b(path, -1);
  EXPECT_EQ(a.num_keys(), 0) << "the bookkeeping keys must not count";

  a.set("from_a", bytes("1"));
  EXPECT_EQ(b.get("from_a"), bytes("1"));
  EXPECT_EQ(b.add("n", 2), 2);
  EXPECT_EQ(a.add("n", 3), 5);
  b.append("log", bytes("x"));
  a.append("log", bytes("y"));
  EXPECT_EQ(b.get("log"), bytes("xy"));
  EXPECT_EQ(a.compare_set("n", bytes("5"), bytes("6")), bytes("6"));
  EXPECT_EQ(b.get("n"), bytes("6"));
  EXPECT_TRUE(b.delete_key("from_a"));
  EXPECT_FALSE(a.check({"from_a"}));
  EXPECT_FALSE(a.delete_key("from_a"));
  b.set("empty", Bytes{});
  EXPECT_TRUE(a.check({"empty"})) << "an empty value is not a missing key";
  EXPECT_EQ(a.get("empty"), Bytes{});
  EXPECT_EQ(a.num_keys(), 3);

  // A store opened later replays the whole history.
  FileStore late(path, -1);
  EXPECT_EQ(late.get("log"), bytes("xy"));
  EXPECT_EQ(late.get("n"), bytes("6"));
  EXPECT_FALSE(late.check({"from_a"}));
  EXPECT_EQ(late.num_keys(), 3);
}

TEST(FileStore, LastOfNumWorkersRemovesTheFile) {
  TempDir dir;
  const std::string path = dir.file("store");
  auto a = std::make_unique<FileStore>(path, 2);
  auto b = std::make_unique<FileStore>(path, 2);
  a.reset();
  EXPECT_TRUE(fs::exists(path)) << "removed while a user still had it open";
  b.reset();
  EXPECT_FALSE(fs::exists(path));

  // Users that come and go one after the other: the second close removes it.
  {
    FileStore first(path, 2);
    first.set("k", bytes("v"));
  }
  EXPECT_TRUE(fs::exists(path)) << "removed before num_workers users closed it";
  {
    FileStore second(path, 2);
    EXPECT_EQ(second.get("k"), bytes("v"));
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(FileStore, MinusOneWorkersNeverRemovesTheFile) {
  TempDir dir;
  const std::string path = dir.file("store");
  { FileStore store(path, -1); }
  { FileStore store(path, -1); }
  EXPECT_TRUE(fs::exists(path));
}

TEST(FileStore, RejectsAFileThatIsNotAStore) {
  TempDir dir;
  const std::string path = dir.file("notes.txt");
  const std::string content = "these are not the records you are looking for\n";
  std::ofstream(path) << content;
  try {
    FileStore store(path, 1);
    FAIL() << "expected DistStoreError";
  } catch (const DistStoreError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  std::ifstream in(path);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), content) << "file modified";

  // An empty file (mkstemp, touch) is a new store.
  const std::string empty = dir.file("empty");
  std::ofstream{empty};
  FileStore store(empty, -1);
  store.set("k", bytes("v"));
  EXPECT_EQ(store.get("k"), bytes("v"));
}

TEST(FileStore, ErrorsNameThePath) {
  TempDir dir;
  const std::string path = dir.file("missing_dir/store");
  try {
    FileStore store(path, 1);
    FAIL() << "expected DistStoreError";
  } catch (const DistStoreError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
  EXPECT_THROW(FileStore(dir.file("s"), 0), InvalidArgument);
  EXPECT_THROW(FileStore(dir.file("s"), -2), InvalidArgument);

  FileStore store(dir.file("store"), 1);
  store.set_timeout(20ms);
  try {
    store.get("never");
    FAIL() << "expected TimeoutError";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find(store.path()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'never'"), std::string::npos) << e.what();
  }
}

// A writer that died mid-append leaves a torn record at the end: it reads as
// not written, and the next write replaces it.
TEST(FileStore, TornTrailingRecordIsIgnored) {
  for (uintmax_t cut : {5, 500}) {  // inside the record header; inside the value
    SCOPED_TRACE(cut);
    TempDir dir;
    const std::string path = dir.file("store");
    { FileStore(path, -1).set("kept", bytes("1")); }
    uintmax_t torn_start = 0;
    {
      FileStore writer(path, -1);
      torn_start = fs::file_size(path);
      writer.set("torn", Bytes(1000, 7));
    }
    fs::resize_file(path, torn_start + cut);

    FileStore reader(path, -1);
    EXPECT_TRUE(reader.check({"kept"}));
    EXPECT_FALSE(reader.check({"torn"}));
    reader.set("after", bytes("2"));
    FileStore later(path, -1);
    EXPECT_EQ(later.get("kept"), bytes("1"));
    EXPECT_EQ(later.get("after"), bytes("2"));
    EXPECT_FALSE(later.check({"torn"}));
    EXPECT_EQ(later.num_keys(), 2);
  }
}

TEST(FileStoreMultiProcess, AddsFromSixteenProcessesAreAtomic) {
  constexpr int kRanks = 16, kAdds = 1000;
  run_ranks(kRanks, [](const RankContext& ctx) {
    FileStore store(ctx.store_path, ctx.world_size);
    store.set_timeout(30s);
    for (int i = 0; i < kAdds; ++i) store.add("counter", 1);
    // Barrier: every rank has finished adding once "done" reaches the world size.
    store.add("done", 1);
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::stoll(store.get_string("done")) < ctx.world_size) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "barrier never completed";
      std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(store.get_string("counter"), std::to_string(kRanks * kAdds));
  });
}

TEST(FileStoreMultiProcess, OthersWaitForAKeySetLate) {
  run_ranks(4, [](const RankContext& ctx) {
    FileStore store(ctx.store_path, ctx.world_size);
    store.set_timeout(10s);
    if (ctx.rank == 0) {
      std::this_thread::sleep_for(300ms);
      store.set("late", bytes("from rank 0"));
      return;
    }
    // Blocking get on some ranks, wait then get on the others.
    if (ctx.rank % 2 == 0) store.wait({"late"});
    EXPECT_EQ(store.get_string("late"), "from rank 0");
  });
}

}  // namespace
}  // namespace tutti::testing
