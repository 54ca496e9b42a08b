// The tutti-bench binary, run as real ranks: one process per rank, exec'd
// with the torchrun variables set, as tuttirun would start it. Checks that
// every operation reports no wrong elements, that the table and the JSON
// have nccl-tests' columns with consistent values, that the checker counts
// (TUTTI_BENCH_CORRUPT), and that bad options fail clearly.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// ------------------------------------------------------------ launching

struct RunResult {
  std::vector<int> exit_codes;  // per rank; -1: killed (deadline, or a peer failed)
  std::string out;              // rank 0's stdout
  std::string err;              // rank 0's stderr
  std::string all_err;          // every rank's stderr, prefixed with the rank
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A port on 127.0.0.1 that was free a moment ago.
uint16_t free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "tutti-bench-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Where rank r's stdout ("out") or stderr ("err") goes.
std::string rank_file(const char* kind, int rank) {
  return "rank" + std::to_string(rank) + "." + kind;
}

// Starts `ranks` tutti-bench processes and waits for all of them, killing
// them at the deadline, or a grace period after one fails (as a launcher
// would).
RunResult launch_once(int ranks, const std::vector<std::string>& args,
                      const std::map<std::string, std::string>& env, const fs::path& dir,
                      bool set_torchrun_env) {
  const std::string port = std::to_string(free_port());
  std::vector<pid_t> pids;
  for (int r = 0; r < ranks; ++r) {
    const std::string out = (dir / rank_file("out", r)).string();
    const std::string err = (dir / rank_file("err", r)).string();
    const pid_t pid = fork();
    if (pid == 0) {
      if (set_torchrun_env) {
        setenv("MASTER_ADDR", "127.0.0.1", 1);
        setenv("MASTER_PORT", port.c_str(), 1);
        setenv("RANK", std::to_string(r).c_str(), 1);
        setenv("WORLD_SIZE", std::to_string(ranks).c_str(), 1);
      }
      for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
      if (!freopen(out.c_str(), "w", stdout) || !freopen(err.c_str(), "w", stderr)) _exit(126);
      std::vector<char*> argv{const_cast<char*>(TUTTI_BENCH_BIN)};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(TUTTI_BENCH_BIN, argv.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  RunResult result;
  result.exit_codes.assign(static_cast<size_t>(ranks), -1);
  std::vector<bool> running(static_cast<size_t>(ranks), true);
  const auto deadline = std::chrono::steady_clock::now() + 180s;
  std::optional<std::chrono::steady_clock::time_point> kill_at;
  for (int left = ranks; left > 0;) {
    for (int r = 0; r < ranks; ++r) {
      if (!running[r]) continue;
      int status = 0;
      if (waitpid(pids[r], &status, WNOHANG) != pids[r]) continue;
      running[r] = false;
      --left;
      result.exit_codes[r] = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      if (result.exit_codes[r] != 0 && !kill_at) {
        kill_at = std::chrono::steady_clock::now() + 15s;
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (left > 0 && (now > deadline || (kill_at && now > *kill_at))) {
      for (int r = 0; r < ranks; ++r) {
        if (running[r]) kill(pids[r], SIGKILL);
      }
      for (int r = 0; r < ranks; ++r) {
        if (running[r]) waitpid(pids[r], nullptr, 0);
      }
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  result.out = read_file(dir / rank_file("out", 0));
  result.err = read_file(dir / rank_file("err", 0));
  for (int r = 0; r < ranks; ++r) {
    std::istringstream lines(read_file(dir / rank_file("err", r)));
    for (std::string line; std::getline(lines, line);) {
      result.all_err += "[rank " + std::to_string(r) + "] " + line + "\n";
    }
  }
  return result;
}

RunResult run_bench(int ranks, const std::vector<std::string>& args,
                    const std::map<std::string, std::string>& env = {},
                    bool set_torchrun_env = true) {
  TempDir dir;
  // The free port may be taken before rank 0 binds it; then try another.
  for (int attempt = 0;; ++attempt) {
    RunResult result = launch_once(ranks, args, env, dir.path(), set_torchrun_env);
    if (attempt < 2 && result.err.find("cannot listen on port") != std::string::npos) continue;
    return result;
  }
}

// ---------------------------------------------------------- the table

struct TableRow {
  int64_t size = 0, count = 0;
  std::string type, redop;
  int root = 0;
  double time_us = 0, algbw = 0, busbw = 0;
  std::string wrong;
};

struct Section {
  std::string op;
  std::vector<TableRow> rows;
};

// Rows are the lines that do not start with '#'; "# op NAME (" starts an
// operation's section.
std::vector<Section> parse_table(const std::string& out) {
  std::vector<Section> sections;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("# op ", 0) == 0) {
      sections.push_back({line.substr(5, line.find(' ', 5) - 5), {}});
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string word; fields >> word;) f.push_back(word);
    EXPECT_EQ(f.size(), 9u) << "row with other than 9 columns: " << line;
    if (f.size() != 9 || sections.empty()) continue;
    TableRow row;
    row.size = std::stoll(f[0]);
    row.count = std::stoll(f[1]);
    row.type = f[2];
    row.redop = f[3];
    row.root = std::stoi(f[4]);
    row.time_us = std::stod(f[5]);
    row.algbw = std::stod(f[6]);
    row.busbw = std::stod(f[7]);
    row.wrong = f[8];
    sections.back().rows.push_back(row);
  }
  return sections;
}

const std::vector<std::string> kAllOps{"allreduce",      "broadcast", "reduce", "allgather",
                                       "reduce_scatter", "alltoall",  "gather", "scatter",
                                       "sendrecv",       "barrier"};

bool reduces(const std::string& op) {
  return op == "allreduce" || op == "reduce" || op == "reduce_scatter";
}
bool rooted(const std::string& op) {
  return op == "broadcast" || op == "reduce" || op == "gather" || op == "scatter";
}

// nccl-tests' doc/PERFORMANCE.md.
double bus_factor(const std::string& op, int n) {
  if (op == "allreduce") return 2.0 * (n - 1) / n;
  if (op == "broadcast" || op == "reduce" || op == "sendrecv") return 1.0;
  if (op == "barrier") return 0.0;
  return static_cast<double>(n - 1) / n;  // allgather, reduce_scatter, alltoall, gather, scatter
}

// What nccl-tests prints for a nominal size: the size actually moved (the
// larger buffer, after rounding the count down to a multiple of n where the
// op splits a buffer) and the per-rank count.
std::pair<int64_t, int64_t> expected_size_and_count(const std::string& op, int64_t bytes,
                                                    int64_t itemsize, int n) {
  const int64_t count = bytes / itemsize;
  if (op == "allreduce" || op == "broadcast" || op == "reduce" || op == "sendrecv") {
    return {count * itemsize, count};
  }
  if (op == "barrier") return {0, 0};
  return {count / n * n * itemsize, count / n};
}

// The rows of a run with --min-bytes 8 --max-bytes 64K of float32.
void expect_sweep(const Section& s, int n) {
  SCOPED_TRACE("op " + s.op);
  if (s.op == "barrier") {
    ASSERT_EQ(s.rows.size(), 1u);
    EXPECT_EQ(s.rows[0].size, 0);
    EXPECT_EQ(s.rows[0].type, "none");
    EXPECT_EQ(s.rows[0].wrong, "0");
    return;
  }
  ASSERT_EQ(s.rows.size(), 14u);  // 8 B .. 64 KiB
  for (size_t k = 0; k < s.rows.size(); ++k) {
    const TableRow& row = s.rows[k];
    SCOPED_TRACE("row " + std::to_string(k));
    const auto [size, count] = expected_size_and_count(s.op, int64_t{8} << k, 4, n);
    EXPECT_EQ(row.size, size);
    EXPECT_EQ(row.count, count);
    EXPECT_EQ(row.type, "float32");
    EXPECT_EQ(row.redop, reduces(s.op) ? "sum" : "none");
    EXPECT_EQ(row.root, rooted(s.op) ? 0 : -1);
    EXPECT_GT(row.time_us, 0);
    // algbw = size / time, busbw = algbw * factor, within the printed digits:
    // half a unit of algbw's last digit, plus what half a unit of the time's
    // last printed digit (2, 1 or 0 decimals) moves algbw by.
    const double time_half_unit = row.time_us >= 10000.0 ? 0.5
                                  : row.time_us >= 100.0 ? 0.05
                                                         : 0.005;
    EXPECT_NEAR(row.algbw, static_cast<double>(row.size) / (row.time_us * 1e3),
                0.006 + row.algbw * time_half_unit / row.time_us);
    EXPECT_NEAR(row.busbw, row.algbw * bus_factor(s.op, n), 0.016);
    EXPECT_EQ(row.wrong, "0");
    if (k > 0 && n <= 2) {
      EXPECT_EQ(row.size, 2 * s.rows[k - 1].size) << "sizes double";
    }
  }
}

const std::vector<std::string> kSmallSweep{"--min-bytes", "8", "--max-bytes", "64K", "--iters", "3",
                                           "--warmup",    "1", "--timeout",   "60"};

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

std::string summary_line(const std::string& out, const std::string& start) {
  const size_t at = out.find(start);
  if (at == std::string::npos) return {};
  return out.substr(at, out.find('\n', at) - at);
}

// ------------------------------------------------------------- tests

class EveryOp : public ::testing::TestWithParam<int> {};

TEST_P(EveryOp, ReportsNoWrongElementsInWellFormedRows) {
  const int n = GetParam();
  const RunResult r = run_bench(n, with(kSmallSweep, {"--op", "all"}));
  for (int code : r.exit_codes) ASSERT_EQ(code, 0) << r.all_err << r.out;
  const auto sections = parse_table(r.out);
  std::vector<std::string> expected_ops;
  for (const auto& op : kAllOps) {
    if (op != "sendrecv" || n > 1) expected_ops.push_back(op);
  }
  std::vector<std::string> ops;
  for (const auto& s : sections) ops.push_back(s.op);
  EXPECT_EQ(ops, expected_ops) << "every op, in order";
  if (n == 1) {
    EXPECT_NE(r.out.find("# sendrecv skipped: needs at least 2 ranks"), std::string::npos);
  }
  for (const auto& s : sections) expect_sweep(s, n);
  EXPECT_EQ(summary_line(r.out, "# Out of bounds values"), "# Out of bounds values : 0 OK");
  EXPECT_NE(summary_line(r.out, "# Avg bus bandwidth    : "), "");
  EXPECT_NE(r.out.find("# tutti-bench: backend gloo, " + std::to_string(n) + " ranks"),
            std::string::npos)
      << r.out;
}

INSTANTIATE_TEST_SUITE_P(Ranks, EveryOp, ::testing::Values(1, 2, 3),
                         [](const auto& info) { return std::to_string(info.param) + "ranks"; });

TEST(TuttiBench, JsonHasOneEntryPerRowWithEveryColumn) {
  TempDir dir;
  const std::string json_path = (dir.path() / "results.json").string();
  const RunResult r = run_bench(2, with(kSmallSweep, {"--op", "all", "--json", json_path}));
  for (int code : r.exit_codes) ASSERT_EQ(code, 0) << r.all_err;
  std::vector<TableRow> table;
  std::vector<std::string> table_ops;
  for (const auto& s : parse_table(r.out)) {
    for (const auto& row : s.rows) {
      table.push_back(row);
      table_ops.push_back(s.op);
    }
  }
  std::ifstream file(json_path);
  ASSERT_TRUE(file) << "no JSON file written";
  const nlohmann::json rows = nlohmann::json::parse(file);  // throws on invalid JSON
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), table.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& j = rows[i];
    SCOPED_TRACE(j.dump());
    EXPECT_EQ(j.at("op"), table_ops[i]);
    EXPECT_EQ(j.at("backend"), "gloo");
    EXPECT_EQ(j.at("world_size"), 2);
    EXPECT_EQ(j.at("size"), table[i].size);
    EXPECT_EQ(j.at("count"), table[i].count);
    EXPECT_EQ(j.at("type"), table[i].type);
    EXPECT_EQ(j.at("redop"), table[i].redop);
    EXPECT_EQ(j.at("root"), table[i].root);
    EXPECT_EQ(j.at("wrong"), 0);
    const double time_us = j.at("time_us"), algbw = j.at("algbw"), busbw = j.at("busbw");
    EXPECT_NEAR(time_us, table[i].time_us, std::max(0.006, time_us * 1e-3));
    if (j.at("op") != "barrier") {
      EXPECT_NEAR(algbw, j.at("size").get<double>() / 1e3 / time_us, algbw * 1e-9);
    }
    EXPECT_NEAR(busbw, algbw * bus_factor(j.at("op"), 2), busbw * 1e-9);
  }
}

TEST(TuttiBench, CorruptedResultsAreCountedAndFailTheRun) {
  const RunResult r =
      run_bench(2, with(kSmallSweep, {"--op", "allreduce,broadcast", "--max-bytes", "1K"}),
                {{"TUTTI_BENCH_CORRUPT", "allreduce"}});
  for (int code : r.exit_codes) EXPECT_EQ(code, 1) << "every rank fails the run\n" << r.all_err;
  const auto sections = parse_table(r.out);
  ASSERT_EQ(sections.size(), 2u) << r.out;
  for (const auto& row : sections[0].rows) {
    EXPECT_GT(std::stoll(row.wrong), 0) << "allreduce of " << row.size << " B";
  }
  for (const auto& row : sections[1].rows) EXPECT_EQ(row.wrong, "0") << "broadcast";
  EXPECT_NE(summary_line(r.out, "# Out of bounds values").find("FAILED"), std::string::npos);
}

// Every op's check counts: with all results corrupted on rank 0 (the root),
// every row that moves data has wrong elements.
TEST(TuttiBench, EveryOpsCheckCountsCorruption) {
  const RunResult r = run_bench(2,
                                {"--op", "all", "--min-bytes", "64", "--max-bytes", "256",
                                 "--iters", "1", "--warmup", "0", "--timeout", "60"},
                                {{"TUTTI_BENCH_CORRUPT", "all"}});
  for (int code : r.exit_codes) EXPECT_EQ(code, 1) << r.all_err;
  const auto sections = parse_table(r.out);
  ASSERT_EQ(sections.size(), kAllOps.size()) << r.out;
  for (const auto& s : sections) {
    for (const auto& row : s.rows) {
      if (s.op == "barrier") continue;
      EXPECT_GT(std::stoll(row.wrong), 0) << s.op << " " << row.size << " B";
    }
  }
}

TEST(TuttiBench, CheckZeroReportsNotApplicable) {
  const RunResult r = run_bench(2, with(kSmallSweep, {"--op", "allreduce", "--check", "0"}),
                                {{"TUTTI_BENCH_CORRUPT", "allreduce"}});
  for (int code : r.exit_codes) EXPECT_EQ(code, 0) << r.all_err;
  const auto sections = parse_table(r.out);
  ASSERT_EQ(sections.size(), 1u);
  for (const auto& row : sections[0].rows) EXPECT_EQ(row.wrong, "N/A");
  EXPECT_NE(r.out.find("not checked"), std::string::npos);
}

// Reducing ops over dtypes and reductions whose results round or wrap.
class DtypeRedop : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(DtypeRedop, ReducingOpsAreRight) {
  const auto [dtype, redop] = GetParam();
  const RunResult r =
      run_bench(3, {"--op", "allreduce,reduce,reduce_scatter", "--dtype", dtype, "--redop", redop,
                    "--root", "2", "--min-bytes", "1", "--max-bytes", "128K", "--iters", "1",
                    "--warmup", "0", "--timeout", "60"});
  for (int code : r.exit_codes) EXPECT_EQ(code, 0) << r.all_err << r.out;
  EXPECT_EQ(summary_line(r.out, "# Out of bounds values"), "# Out of bounds values : 0 OK")
      << r.out;
}

INSTANTIATE_TEST_SUITE_P(
    Combinations, DtypeRedop,
    ::testing::Values(std::pair{"float16", "sum"}, std::pair{"bfloat16", "avg"},
                      std::pair{"float32", "avg"}, std::pair{"float64", "product"},
                      std::pair{"int8", "avg"}, std::pair{"uint8", "product"},
                      std::pair{"int64", "bxor"}, std::pair{"int32", "min"},
                      std::pair{"bool", "sum"}, std::pair{"bool", "band"},
                      std::pair{"int16", "premul_sum"}),
    [](const auto& info) { return std::string(info.param.first) + "_" + info.param.second; });

// Data-moving ops on dtypes of every width, a root other than 0, and sizes
// that do not divide by the element size or the rank count.
TEST(TuttiBench, MovingOpsAreRightForEveryWidthAndOddSizes) {
  for (const char* dtype : {"bool", "bfloat16", "int32", "float64"}) {
    SCOPED_TRACE(dtype);
    const RunResult r =
        run_bench(3, {"--op", "broadcast,allgather,alltoall,gather,scatter,sendrecv", "--dtype",
                      dtype, "--root", "1", "--min-bytes", "3", "--max-bytes", "50000", "--iters",
                      "1", "--warmup", "0", "--timeout", "60"});
    for (int code : r.exit_codes) EXPECT_EQ(code, 0) << r.all_err << r.out;
    EXPECT_EQ(summary_line(r.out, "# Out of bounds values"), "# Out of bounds values : 0 OK");
  }
}

struct BadOption {
  std::vector<std::string> args;
  const char* message;  // a part of the error
};

class BadOptions : public ::testing::TestWithParam<BadOption> {};

TEST_P(BadOptions, FailWithAClearMessage) {
  // Rejected before any process group exists: no launcher variables needed.
  const RunResult r = run_bench(1, GetParam().args, {}, /*set_torchrun_env=*/false);
  EXPECT_EQ(r.exit_codes[0], 2) << r.err;
  EXPECT_NE(r.err.find(GetParam().message), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadOptions,
    ::testing::Values(BadOption{{"--op", "allreduse"}, "unknown op 'allreduse'"},
                      BadOption{{"--min-bytes", "12Q"}, "'12Q' is not a size"},
                      BadOption{{"--max-bytes", "-1"}, "not a size"},
                      BadOption{{"--min-bytes", "1M", "--max-bytes", "1K"}, "larger than"},
                      BadOption{{"--check", "2"}, "--check"},
                      BadOption{{"--iters", "0"}, "--iters"},
                      BadOption{{"--dtype", "float128"}, "unknown dtype 'float128'"},
                      BadOption{{"--redop", "mean"}, "unknown reduce op 'mean'"},
                      BadOption{{"--redop", "bxor"}, "not defined on --dtype float32"},
                      BadOption{{"--frobnicate"}, "--frobnicate"}));

TEST(TuttiBench, RootOutsideTheJobFailsOnEveryRank) {
  const RunResult r = run_bench(2, {"--op", "reduce", "--root", "2", "--timeout", "60"});
  for (int code : r.exit_codes) EXPECT_EQ(code, 2);
  EXPECT_NE(r.err.find("--root 2 is not a rank of this 2-rank job"), std::string::npos) << r.err;
}

TEST(TuttiBench, WithoutLauncherVariablesSaysWhatIsMissing) {
  const RunResult r = run_bench(1, {"--op", "barrier"}, {}, /*set_torchrun_env=*/false);
  EXPECT_EQ(r.exit_codes[0], 2);
  EXPECT_NE(r.err.find("MASTER_ADDR"), std::string::npos) << r.err;
}

TEST(TuttiBench, SizeSuffixes) {
  const RunResult r = run_bench(1, {"--op", "broadcast", "--min-bytes", "1K", "--max-bytes", "4k",
                                    "--iters", "1", "--timeout", "60"});
  ASSERT_EQ(r.exit_codes[0], 0) << r.err;
  const auto sections = parse_table(r.out);
  ASSERT_EQ(sections.size(), 1u);
  std::vector<int64_t> sizes;
  for (const auto& row : sections[0].rows) sizes.push_back(row.size);
  EXPECT_EQ(sizes, (std::vector<int64_t>{1024, 2048, 4096}));
}

}  // namespace
