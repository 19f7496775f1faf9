// Log lines stay one line each: a key may hold any byte but '/' and NUL
// (newlines, escape sequences), and written raw it could forge log lines or
// drive a terminal. Every sink of the daemon's logger writes a message's
// control characters escaped (\n, \r, \t, \xHH).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

namespace originfs {

inline std::string EscapeControl(std::string_view in) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(in.size() + 8);
  for (unsigned char c : in) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

class EscapingSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit EscapingSink(spdlog::sink_ptr inner) : inner_(std::move(inner)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string_view p(msg.payload.data(), msg.payload.size());
    bool clean = true;
    for (unsigned char c : p) clean = clean && c >= 0x20 && c != 0x7f;
    if (clean) return inner_->log(msg);
    std::string escaped = EscapeControl(p);
    spdlog::details::log_msg copy(msg);
    copy.payload = escaped;
    inner_->log(copy);
  }
  void flush_() override { inner_->flush(); }
  void set_pattern_(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter_(std::unique_ptr<spdlog::formatter> f) override {
    inner_->set_formatter(std::move(f));
  }

 private:
  spdlog::sink_ptr inner_;
};

// Wraps every sink of logger in an EscapingSink.
inline void EscapeLogLines(spdlog::logger& logger) {
  for (auto& s : logger.sinks()) s = std::make_shared<EscapingSink>(s);
}

}  // namespace originfs
