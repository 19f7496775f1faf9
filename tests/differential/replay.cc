// Replaying a failing worker's sequence alone, without origin faults, and
// shortening it by delta debugging.
#include <chrono>
#include <fstream>
#include <iostream>

#include "tests/differential/runner.h"
#include "tests/differential/world.h"

namespace originfs::difffuzz {
namespace {

using namespace std::chrono_literals;

struct Sequence {
  std::uint64_t seed = 0;
  int workers = 0, worker = 0;
  std::vector<Op> ops;
};

bool Load(const std::string& file, Sequence* seq) {
  std::ifstream in(file);
  if (!in) return false;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("# seed "))
      seq->seed = std::stoull(line.substr(7));
    else if (line.starts_with("# workers "))
      seq->workers = std::stoi(line.substr(10));
    else if (line.starts_with("# worker "))
      seq->worker = std::stoi(line.substr(9));
    else if (line.starts_with("#") || line.empty())
      continue;
    else if (auto op = Parse(line))
      seq->ops.push_back(*op);
    else
      return false;
  }
  return seq->workers > 0;
}

struct Result {
  int failed_at = -1;  // index of the diverging op (ops.size(): the final comparison), -1 none
  std::string what;
};

Result ReplayOnce(const Sequence& seq, const std::vector<Op>& ops) {
  World world(seq.seed, seq.workers, 600s);
  Result r;
  if (!world.Mount()) return {0, "the mount did not come up"};
  std::string w = "/w" + std::to_string(seq.worker);
  for (std::size_t i = 0; i < ops.size() && r.failed_at < 0; ++i) {
    const Op& op = ops[i];
    if (op.kind == Kind::kRemount) {
      bool ok = world.Unmount();
      if (ok && op.flags) world.Reset();
      if (!ok || !world.Mount()) r = {static_cast<int>(i), "remount failed"};
      continue;
    }
    Outcome m = Apply(world.mnt + w, op, true);
    Outcome ref = Apply(world.ref + w, op, false);
    if (!(m == ref)) r = {static_cast<int>(i), Serialize(op) + "\n  " + Difference(m, ref)};
  }
  if (r.failed_at < 0) {
    auto d = CompareTrees(world.mnt + w, world.ref + w);
    if (!d.empty()) r = {static_cast<int>(ops.size()), "final comparison: " + d};
  }
  world.Unmount();
  return r;
}

void Print(const std::vector<Op>& ops) {
  for (const auto& op : ops) std::cerr << "    " << Serialize(op) << "\n";
}

}  // namespace

int Replay(const Config&, const std::string& ops_file) {
  Sequence seq;
  if (!Load(ops_file, &seq)) {
    std::cerr << ops_file << ": not a sequence written by differential_fuzz\n";
    return 2;
  }
  Result r = ReplayOnce(seq, seq.ops);
  if (r.failed_at < 0) {
    std::cout << "replay of " << seq.ops.size() << " ops: no divergence" << std::endl;
    return 0;
  }
  std::cerr << "replay: divergence at op " << r.failed_at << ": " << r.what << std::endl;
  return 1;
}

void Minimize(const Config& c, const std::string& ops_file) {
  Sequence seq;
  if (!Load(ops_file, &seq)) return;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(c.minimize_seconds);
  Result first = ReplayOnce(seq, seq.ops);
  if (first.failed_at < 0) {
    std::cerr << "the sequence does not fail when replayed alone without origin faults: it needs "
                 "the other workers or the origin's faults (full sequence in "
              << ops_file << ")" << std::endl;
    return;
  }
  std::vector<Op> ops(seq.ops.begin(),
                      seq.ops.begin() + std::min<std::size_t>(first.failed_at + 1, seq.ops.size()));
  std::string what = first.what;
  // ddmin: drop chunks while the sequence still fails (any divergence).
  std::size_t n = 2;
  while (ops.size() >= 2 && std::chrono::steady_clock::now() < deadline) {
    std::size_t chunk = (ops.size() + n - 1) / n;
    bool reduced = false;
    for (std::size_t start = 0; start < ops.size() && std::chrono::steady_clock::now() < deadline;
         start += chunk) {
      std::vector<Op> rest(ops.begin(), ops.begin() + start);
      rest.insert(rest.end(), ops.begin() + std::min(start + chunk, ops.size()), ops.end());
      Result r = ReplayOnce(seq, rest);
      if (r.failed_at >= 0) {
        ops.assign(rest.begin(),
                   rest.begin() + std::min<std::size_t>(r.failed_at + 1, rest.size()));
        what = r.what;
        n = std::max<std::size_t>(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= ops.size()) break;
      n = std::min(n * 2, ops.size());
    }
  }
  std::string out = ops_file.substr(0, ops_file.rfind(".ops")) + ".min.ops";
  WriteOps(out, seq.seed, seq.workers, seq.worker, ops);
  std::cerr << "minimized to " << ops.size() << " ops (" << out << "), alone and without faults:\n";
  Print(ops);
  std::cerr << "  " << what << std::endl;
}

}  // namespace originfs::difffuzz
