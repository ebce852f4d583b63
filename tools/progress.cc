#include "tools/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>

#include "common/units.h"

namespace cachefs::tools {

Progress::Progress(std::string label, std::string unit, uint64_t total_items, uint64_t total_bytes)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      shown_(::isatty(STDERR_FILENO) == 1),
      total_items_(total_items),
      total_bytes_(total_bytes),
      start_(std::chrono::steady_clock::now()) {
  if (!shown_) return;
  ticker_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return done_; })) draw();
  });
}

Progress::~Progress() {
  finish();
}

void Progress::finish() {
  if (!ticker_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  ticker_.join();
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

void Progress::draw() {
  const uint64_t items = items_.load(std::memory_order_relaxed);
  const uint64_t bytes = bytes_.load(std::memory_order_relaxed);
  const uint64_t titems = total_items_.load(std::memory_order_relaxed);
  const uint64_t tbytes = total_bytes_.load(std::memory_order_relaxed);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  // Bytes are the better measure of work left when known; else items.
  double frac = -1;
  if (tbytes > 0)
    frac = static_cast<double>(bytes) / static_cast<double>(tbytes);
  else if (titems > 0)
    frac = static_cast<double>(items) / static_cast<double>(titems);
  std::string line = "\r\033[K" + label_ + " ";
  if (frac >= 0) {
    if (frac > 1) frac = 1;
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(frac * kWidth);
    line += "[" + std::string(static_cast<size_t>(filled), '#') +
            std::string(static_cast<size_t>(kWidth - filled), '.') + "] ";
    char pct[16];
    std::snprintf(pct, sizeof pct, "%3.0f%% ", frac * 100);
    line += pct;
  }
  line += std::to_string(items);
  if (titems > 0) line += "/" + std::to_string(titems);
  line += " " + unit_;
  if (bytes > 0) {
    line += ", " + human_bytes(bytes);
    if (secs > 0.5) {
      line += ", " + human_bytes(static_cast<uint64_t>(static_cast<double>(bytes) / secs)) + "/s";
    }
  }
  winsize ws{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 8 &&
      line.size() > ws.ws_col + 4u) {
    line.resize(ws.ws_col + 4u);  // +4: the "\r\033[K" prefix takes no columns
  }
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace cachefs::tools
