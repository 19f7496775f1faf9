#pragma once

namespace originfs {

extern const char* const kVersion;
extern const char* const kUsage;

// originfs BUCKET_DIR MOUNTPOINT [-o ...] [-f] [-d]: mounts and serves until
// unmounted. Exit codes follow mount(8): 1 usage or configuration, 32 mount failure.
int RunMount(int argc, char** argv);

}  // namespace originfs
