// Logging is configured once, here, for every binary of the project.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace cachefs {

// Parses a level name (trace, debug, info, warn, error, off); throws UsageError.
spdlog::level::level_enum parse_log_level(std::string_view name);

// Sends the default logger to stderr, or to syslog (ident = program) when the
// process has detached from its terminal.
void setup_logging(std::string_view program, spdlog::level::level_enum level, bool to_syslog);

}  // namespace cachefs
