// Rules whose origin is a file server (ftp://, ftps:// with explicit TLS,
// sftp://): where the login comes from, and the files it is kept in, which
// must not be readable by others.
#pragma once

#include <string>
#include <string_view>

#include "core/common/error.h"

namespace originfs {

struct Rule;

// ftp://, ftps:// or sftp://.
bool IsFileServerOrigin(std::string_view url);

// Checks a rule with a file-server origin once all its keys are read: its
// credentials_file (user = / password = lines, optionally in [profile]
// sections; mode 0600), netrc (mode 0600), ssh_key (sftp only, mode 0600)
// and known_hosts (sftp only, readable). Errors are the message alone; the
// caller says which rule.
Result<void> SetUpFileServerRule(Rule& rule);

}  // namespace originfs
