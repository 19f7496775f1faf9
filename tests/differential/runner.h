// The differential fuzzer's run: workers, the misbehaving origin, remounts,
// the hang watchdog, and the replay and minimization of a failing sequence.
#pragma once

#include <cstdint>
#include <string>

namespace originfs::difffuzz {

constexpr int kMaxWorkers = 16;

struct Config {
  std::uint64_t seed = 0;
  int seconds = 60;
  std::uint64_t max_ops = 0;  // 0: until the time is up
  int procs = 2;              // worker processes ...
  int threads = 2;            // ... of this many threads each, one subtree per thread
  bool chaos = true;          // the origin misbehaves (slow, flaky, broken bodies, down)
  bool remount = true;        // unmount and mount again now and then
  std::string out_dir = ".";  // where a failing sequence is written
  int minimize_seconds = 120;
  int hang_seconds = 60;  // an operation still running after this is a hang
};

// A whole run; 0 if no divergence, hang or crash was seen.
int Run(const Config& c);
// Replays a failing worker's sequence (written by Run) on a fresh mount,
// alone and without origin faults; 0 if it no longer fails.
int Replay(const Config& c, const std::string& ops_file);
// Shortens a failing sequence (delta debugging over replays, within
// c.minimize_seconds) and writes it beside ops_file as .min.ops.
void Minimize(const Config& c, const std::string& ops_file);

}  // namespace originfs::difffuzz
