// The differential fuzzer (tests/differential/README.md): generated
// operations from several processes and threads through a real originfs
// mount whose origin misbehaves, each compared with the same operation on a
// plain directory holding the same tree.
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/differential/runner.h"

using namespace originfs::difffuzz;

namespace {

void Usage() {
  std::cerr
      << "usage: differential_fuzz [--seed N] [--seconds S] [--ops N] [--procs P] [--threads T]\n"
         "  (--procs 0: the threads in this process, no fork: for sanitizer builds)\n"
         "                         [--no-chaos] [--no-remount] [--out DIR] [--minimize-seconds S]\n"
         "       differential_fuzz --replay FILE   (an .ops file a failing run wrote)\n"
         "--seed 0 (the default) picks a random seed and prints it.\n";
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  std::string replay;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        Usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--seed")
      c.seed = std::stoull(next());
    else if (a == "--seconds")
      c.seconds = std::stoi(next());
    else if (a == "--ops")
      c.max_ops = std::stoull(next());
    else if (a == "--procs")
      c.procs = std::stoi(next());
    else if (a == "--threads")
      c.threads = std::stoi(next());
    else if (a == "--no-chaos")
      c.chaos = false;
    else if (a == "--no-remount")
      c.remount = false;
    else if (a == "--out")
      c.out_dir = next();
    else if (a == "--minimize-seconds")
      c.minimize_seconds = std::stoi(next());
    else if (a == "--replay")
      replay = next();
    else {
      Usage();
      return 2;
    }
  }
  if (c.procs < 0 || c.threads < 1 || std::max(c.procs, 1) * c.threads > kMaxWorkers) {
    std::cerr << "at most " << kMaxWorkers << " workers\n";
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (!replay.empty()) return Replay(c, replay);
  if (c.seed == 0) {
    std::random_device rd;
    c.seed = (static_cast<std::uint64_t>(rd()) << 20) ^ rd();
    if (c.seed == 0) c.seed = 1;
  }
  std::cout << "differential_fuzz: seed " << c.seed << " (" << c.procs << " processes x "
            << c.threads << " threads, " << c.seconds << " s"
            << (c.max_ops ? ", at most " + std::to_string(c.max_ops) + " ops" : std::string())
            << (c.chaos ? ", origin faults" : "") << (c.remount ? ", remounts" : "") << ")"
            << std::endl;
  return Run(c);
}
