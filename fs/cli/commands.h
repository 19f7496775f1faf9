// Commands beside the mount: they talk to a running mount only through the
// filesystem (extended attributes on the mount root, reads through the mount).
#pragma once

#include <optional>
#include <string>

namespace originfs {

int CheckCommand(int argc, char** argv);    // originfs check RULES_FILE
int ReloadCommand(int argc, char** argv);   // originfs reload MNT
int StatsCommand(int argc, char** argv);    // originfs stats MNT
int WarmCommand(int argc, char** argv);     // originfs warm MNT [-j N] [KEYS_FILE]
int RefreshCommand(int argc, char** argv);  // originfs refresh MNT KEY...
int RestoreCommand(int argc, char** argv);  // originfs restore MNT KEY...
int VerifyCommand(int argc, char** argv);   // originfs verify MNT [DIR...]
// originfs stats MNT DIR...: each tree's share in the bucket, rate and ETA.
int StatsTreesCommand(const std::string& mnt, char** first, char** last);

// The source (bucket directory) of an originfs mount at exactly path (as
// /proc/self/mountinfo shows it, type fuse.originfs), if there is one.
std::optional<std::string> OriginfsMountSource(const std::string& path);

}  // namespace originfs
