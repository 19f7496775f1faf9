// originfs --version: the version, and the libraries the binary was built with.
#pragma once

#include <string>

namespace originfs {

// "originfs VERSION", then "built with:" and one line per library: the
// version compiled against and, where the library tells at run time (libfuse,
// libcurl), the one loaded. Every line ends with '\n'.
std::string VersionText();

}  // namespace originfs
