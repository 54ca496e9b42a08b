// tutti-trace DIR: reads every rank's flight-recorder dump in DIR
// (tutti-trace.rank<R>.json, as TUTTI_TRACE_DIR, SIGUSR1 or
// tutti::dump_trace() write them) and reports where the ranks diverge.
//
// Exit status: 0 when no problem is found, 1 when one is (a rank without a
// dump, a failed or stuck operation, a mismatched collective), 2 when the
// dumps cannot be read (no dump in DIR, a malformed dump, bad arguments).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "debug/trace_dump.hpp"
#include "tutti_trace/analyze.hpp"

namespace {

std::vector<tutti::trace::Dump> read_dumps(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw std::runtime_error(fmt::format("{} is not a directory", dir));
  }
  std::vector<fs::path> paths;
  for (const auto& item : fs::directory_iterator(dir, ec)) {
    const std::string name = item.path().filename().string();
    // Skip the temporary files of a dump being written.
    if (name.rfind("tutti-trace.", 0) == 0 && item.path().extension() == ".json") {
      paths.push_back(item.path());
    }
  }
  if (ec) throw std::runtime_error(fmt::format("cannot list {}: {}", dir, ec.message()));
  std::sort(paths.begin(), paths.end());
  if (paths.empty()) {
    throw std::runtime_error(fmt::format(
        "no flight-recorder dump (tutti-trace.rank<R>.json) in {}; was TUTTI_TRACE_DIR set "
        "to it?",
        dir));
  }
  std::vector<tutti::trace::Dump> dumps;
  for (const auto& path : paths) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) throw std::runtime_error(fmt::format("cannot read {}", path.string()));
    try {
      dumps.push_back(tutti::trace::parse_trace_dump(text.str()));
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("{}: {}", path.string(), e.what()));
    }
  }
  return dumps;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "tutti-trace: where did the ranks diverge? Reads the flight-recorder dumps of every rank "
      "in DIR.\nExit status: 0 no problem found, 1 problems found, 2 dumps unreadable."};
  std::string dir;
  bool json = false;
  tutti::trace_tool::Options options;
  app.add_option("DIR", dir, "directory holding tutti-trace.rank<R>.json files")->required();
  app.add_flag("--json", json, "print the report as JSON");
  app.add_option("--stuck-after", options.stuck_after_s,
                 "seconds an operation must have been in flight at its dump to count as stuck")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    auto report = tutti::trace_tool::analyze(read_dumps(dir), options);
    std::cout << (json ? tutti::trace_tool::render_json(report)
                       : tutti::trace_tool::render_text(report));
    return report.problems > 0 ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "tutti-trace: " << e.what() << "\n";
    return 2;
  }
}
