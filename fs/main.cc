// originfs: mount a bucket directory with back-source rules; and the commands
// that go with a mount (check, reload, stats, warm).
#include <cstdio>
#include <exception>
#include <string>

#include "fs/cli/commands.h"
#include "fs/daemon.h"
#include "fs/version.h"

int main(int argc, char** argv) {
  if (argc >= 2) {
    std::string a = argv[1];
    if (a == "--help" || a == "-h" || a == "help") {
      std::fputs(originfs::kUsage, stdout);
      return 0;
    }
    if (a == "--version" || a == "-V") {
      std::fputs(originfs::VersionText().c_str(), stdout);
      return 0;
    }
    if (a == "check") return originfs::CheckCommand(argc, argv);
    if (a == "reload") return originfs::ReloadCommand(argc, argv);
    if (a == "stats") return originfs::StatsCommand(argc, argv);
    if (a == "verify") return originfs::VerifyCommand(argc, argv);
    if (a == "warm") return originfs::WarmCommand(argc, argv);
    if (a == "refresh") return originfs::RefreshCommand(argc, argv);
    if (a == "restore") return originfs::RestoreCommand(argc, argv);
  }
  try {
    return originfs::RunMount(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "originfs: fatal: %s\n", e.what());
    return 4;
  }
}
