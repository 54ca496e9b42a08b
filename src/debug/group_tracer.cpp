#include "debug/group_tracer.hpp"

#include <fmt/format.h>

#include "core/logging.hpp"
#include "tutti/errors.hpp"

namespace tutti::trace {

std::shared_ptr<GroupTracer> GroupTracer::create(std::shared_ptr<Store> store, int rank, int size,
                                                 std::string group_name, FlightRecorder& recorder) {
  const uint32_t index = recorder.register_group(group_name, rank, size);
  if (recorder.enabled() && &recorder == &FlightRecorder::global()) install_signal_dumps();
  return std::make_shared<GroupTracer>(std::move(store), rank, std::move(group_name), recorder,
                                       index);
}

GroupTracer::GroupTracer(std::shared_ptr<Store> store, int rank, std::string group_name,
                         FlightRecorder& recorder, uint32_t group_index)
    : rank_(rank),
      group_name_(std::move(group_name)),
      recorder_(recorder),
      group_index_(group_index),
      root_cause_(std::move(store)) {}

void GroupTracer::on_started(uint64_t id) noexcept { recorder_.started(id); }

std::exception_ptr GroupTracer::on_finished(uint64_t id, std::exception_ptr error,
                                            bool can_amend) noexcept {
  if (!error) {
    recorder_.completed(id);
    return error;
  }
  return handle_failure(id, std::move(error), can_amend);
}

void GroupTracer::failed_to_issue(uint64_t id, const std::exception_ptr& error) noexcept {
  const std::string text = fmt::format("{}: {}", error_type_name(error), error_message(error));
  recorder_.failed(id, text);
}

std::exception_ptr GroupTracer::handle_failure(uint64_t id, std::exception_ptr error,
                                               bool can_amend) noexcept {
  try {
    const std::string type = error_type_name(error);
    const std::string text = fmt::format("{}: {}", type, error_message(error));
    OpSummary op;
    op.group = group_name_;
    recorder_.failed(id, text, &op);
    const std::string dir = trace_dir_from_env();
    if (!dir.empty() && !dumped_.exchange(true)) {
      try {
        const std::string path = write_dump(
            recorder_.snapshot(fmt::format("{} failed on rank {}: {}", op.str(), rank_, type)),
            dir);
        TUTTI_LOG(LogLevel::WARNING, rank_, group_name_, "{} failed; flight recorder written to {}",
                  op.str(), path);
      } catch (const std::exception& e) {
        TUTTI_LOG(LogLevel::ERROR, rank_, group_name_, "{}", e.what());
      }
    }
    const auto verdict =
        root_cause_.publish(fmt::format("rank {} failed first: {}: {}", rank_, op.str(), text));
    if (can_amend && verdict.kind == RootCause::Verdict::OTHER) {
      return with_note(error, "; " + verdict.text);
    }
  } catch (...) {
    // Out of memory while describing a failure: raise the original error.
  }
  return error;
}

void GroupTracer::run_blocking(uint64_t seq, const OpInfo& info,
                               const std::function<void()>& call) {
  const uint64_t id = recorder_.record(group_index_, seq, info);
  if (id == 0) return call();
  recorder_.started(id);
  try {
    call();
  } catch (...) {
    std::rethrow_exception(handle_failure(id, std::current_exception(), true));
  }
  recorder_.completed(id);
}

}  // namespace tutti::trace
