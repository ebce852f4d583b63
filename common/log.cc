#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <syslog.h>

#include <string>

#include "common/error.h"

namespace cachefs {

spdlog::level::level_enum parse_log_level(std::string_view name) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},   {"off", spdlog::level::off},
  };
  for (const auto& [n, level] : kLevels) {
    if (n == name) return level;
  }
  throw UsageError::make(
      "--log-level: unknown level '{}' (use trace, debug, info, warn, error, off)", name);
}

void setup_logging(std::string_view program, spdlog::level::level_enum level, bool to_syslog) {
  // Built directly rather than through spdlog's registry, so that calling this
  // again (a daemon switching to syslog after it detaches) replaces the logger.
  std::shared_ptr<spdlog::logger> logger;
  if (to_syslog) {
    logger = std::make_shared<spdlog::logger>(
        std::string(program), std::make_shared<spdlog::sinks::syslog_sink_mt>(
                                  std::string(program), LOG_PID, LOG_DAEMON, false));
  } else {
    logger = std::make_shared<spdlog::logger>(
        std::string(program), std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    logger->set_pattern("%^%Y-%m-%dT%H:%M:%S.%e %n[%P] %l:%$ %v");
  }
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace cachefs
