// Commands beside the mount: they talk to a running mount only through the
// filesystem (extended attributes on the mount root, reads through the mount).
#pragma once

namespace originfs {

int CheckCommand(int argc, char** argv);    // originfs check RULES_FILE
int ReloadCommand(int argc, char** argv);   // originfs reload MNT
int StatsCommand(int argc, char** argv);    // originfs stats MNT
int WarmCommand(int argc, char** argv);     // originfs warm MNT [-j N] [KEYS_FILE]
int RefreshCommand(int argc, char** argv);  // originfs refresh MNT KEY...

}  // namespace originfs
