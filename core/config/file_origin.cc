#include "core/config/file_origin.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <fstream>

#include <spdlog/fmt/fmt.h>

#include "core/common/url_scheme.h"
#include "core/config/rules.h"

namespace originfs {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// A file of secrets: it exists and only its owner may read it.
Result<void> Private(std::string_view key, const std::string& path) {
  if (!path.starts_with('/')) return Fail(EINVAL, fmt::format("{} must be an absolute path", key));
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    return Fail(EINVAL, fmt::format("{} {}: {}", key, path, std::strerror(errno)));
  if ((st.st_mode & 077) != 0)
    return Fail(EACCES, fmt::format("{} {} is readable by others (mode {:o}); run chmod 600 {}",
                                    key, path, st.st_mode & 0777, path));
  if (access(path.c_str(), R_OK) != 0)
    return Fail(EINVAL, fmt::format("{} {}: {}", key, path, std::strerror(errno)));
  return {};
}

// user = NAME / password = SECRET, before any [section] or in [profile].
Result<void> ReadLogin(Rule& rule) {
  const std::string& path = rule.credentials_file;
  ORIGINFS_TRY(Private("credentials_file", path));
  std::ifstream in(path);
  if (!in) return Fail(EINVAL, fmt::format("credentials_file {}: cannot read it", path));
  FileLogin login;
  std::string line, section;
  while (std::getline(in, line)) {
    std::string_view l = Trim(line);
    if (l.empty() || l.front() == '#' || l.front() == ';') continue;
    if (l.front() == '[' && l.back() == ']') {
      section = std::string(Trim(l.substr(1, l.size() - 2)));
      continue;
    }
    std::size_t eq = l.find('=');
    if (eq == std::string_view::npos || (!section.empty() && section != rule.profile)) continue;
    std::string_view k = Trim(l.substr(0, eq)), v = Trim(l.substr(eq + 1));
    if (k == "user") login.user = v;
    if (k == "password") login.password = v;
  }
  if (login.user.empty())
    return Fail(EINVAL,
                fmt::format("credentials_file {} has no user = line{}", path,
                            rule.profile == "default" ? std::string()
                                                      : fmt::format(" for [{}]", rule.profile)));
  login.source = path;
  rule.login = std::move(login);
  return {};
}

}  // namespace

bool IsFileServerOrigin(std::string_view url) { return IsFileServerUrl(url); }

Result<void> SetUpFileServerRule(Rule& rule) {
  bool sftp = false;
  for (const std::string& o : rule.origins) {
    if (!IsFileServerOrigin(o))
      return Fail(EINVAL, fmt::format("origins {}: those of one rule are all file servers (ftp, "
                                      "ftps, sftp) or none",
                                      fmt::join(rule.origins, ", ")));
    sftp |= StartsWithNoCase(o, "sftp://");
  }
  if (!rule.credentials_file.empty()) ORIGINFS_TRY(ReadLogin(rule));
  if (!rule.netrc.empty()) ORIGINFS_TRY(Private("netrc", rule.netrc));
  if (!sftp && (!rule.ssh_key.empty() || !rule.known_hosts.empty()))
    return Fail(EINVAL, "ssh_key and known_hosts go with sftp:// origins");
  if (!rule.ssh_key.empty()) ORIGINFS_TRY(Private("ssh_key", rule.ssh_key));
  if (!rule.known_hosts.empty() && access(rule.known_hosts.c_str(), R_OK) != 0)
    return Fail(EINVAL, fmt::format("known_hosts {}: {}", rule.known_hosts, std::strerror(errno)));
  return {};
}

}  // namespace originfs
