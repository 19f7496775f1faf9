#include "core/origin/file_server.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <mutex>
#include <set>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/common/url_scheme.h"
#include "core/origin/ftp_listing.h"

namespace originfs::file_server {
namespace {

// "ftp://user@host:21/a/b" -> "host:21" (the default port when none).
std::string HostPort(std::string_view url, bool sftp) {
  std::size_t start = url.find("://");
  std::string_view rest = url.substr(start == std::string_view::npos ? 0 : start + 3);
  rest = rest.substr(0, rest.find('/'));
  if (auto at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
  std::string hp(rest);
  if (hp.find(':') == std::string::npos || hp.back() == ']') hp += sftp ? ":22" : ":21";
  return hp;
}

std::mutex mlsd_mu;
std::set<std::string>& NoMlsd() {
  static std::set<std::string> servers;  // "host:port" that refused MLSD
  return servers;
}

// SHA256:BASE64 of a host key, as ssh-keygen -l prints it.
std::string Fingerprint(const curl_khkey* key) {
  std::string blob;
  if (key->len == 0) {  // a base64 string: decode it
    std::string_view b64 = key->key;
    blob.resize(b64.size());
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(blob.data()),
                            reinterpret_cast<const unsigned char*>(b64.data()),
                            static_cast<int>(b64.size()));
    if (n < 0) return "(unreadable key)";
    while (!b64.empty() && b64.back() == '=') {
      b64.remove_suffix(1);
      --n;
    }
    blob.resize(static_cast<std::size_t>(n));
  } else {
    blob.assign(key->key, key->len);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_Digest(blob.data(), blob.size(), md, &md_len, EVP_sha256(), nullptr);
  std::string out(4 * ((md_len + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), md, md_len);
  out.resize(static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  return "SHA256:" + out;
}

struct KnownHostsCheck {
  std::string host, file;
};

// libssh2 compared the server's key with the known_hosts file: only a match
// is accepted; an unknown or a changed key is refused with one log line.
int HostKeyCallback(CURL*, const curl_khkey*, const curl_khkey* found, enum curl_khmatch match,
                    void* user) {
  if (match == CURLKHMATCH_OK) return CURLKHSTAT_FINE;
  auto* c = static_cast<KnownHostsCheck*>(user);
  spdlog::warn("sftp {}: host key {} {} {}; refused (add it to {} if it is the server's)", c->host,
               found ? Fingerprint(found) : "?",
               match == CURLKHMATCH_MISMATCH ? "differs from the one in" : "is not in", c->file,
               c->file);
  return CURLKHSTAT_REJECT;
}

std::string DefaultKnownHosts() {
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/.ssh/known_hosts";
}

}  // namespace

bool IsFileServerUrl(std::string_view url) { return originfs::IsFileServerUrl(url); }

bool SetUp(CURL* curl, const HttpRequest& req, Attempt* a, std::string* why) {
  a->on = true;
  a->sftp = StartsWithNoCase(req.url, "sftp://");
  bool tls = StartsWithNoCase(req.url, "ftps://");
  // ftps:// here is explicit TLS (AUTH TLS on the FTP port): curl's ftp://
  // with TLS required. (curl's own ftps:// is implicit TLS, port 990.)
  a->url = tls ? "ftp://" + req.url.substr(7) : req.url;
  a->host_port = HostPort(a->url, a->sftp);
  a->listing = a->url.ends_with('/');
  // SFTP answers a body-less request for any path, existing or not: a HEAD
  // reads the body (a file's or a listing) and drops it.
  a->drop_body = a->sftp && req.head;
  if (a->drop_body) curl_easy_setopt(curl, CURLOPT_NOBODY, 0L);
  a->range = req.range;
  curl_easy_setopt(curl, CURLOPT_URL, a->url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "ftp,sftp");
  curl_easy_setopt(curl, CURLOPT_FILETIME, 1L);
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, nullptr);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
  if (tls) curl_easy_setopt(curl, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
  if (!a->sftp) {
    curl_easy_setopt(curl, CURLOPT_FTP_FILEMETHOD, static_cast<long>(CURLFTPMETHOD_SINGLECWD));
    if (a->listing && !req.head) {
      std::lock_guard lock(mlsd_mu);
      a->mlsd = !NoMlsd().contains(a->host_port);
    }
    if (a->mlsd) curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "MLSD");
  }
  if (req.login) {
    curl_easy_setopt(curl, CURLOPT_USERNAME, req.login->user.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, req.login->password.c_str());
  } else if (!req.netrc_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_NETRC, static_cast<long>(CURL_NETRC_OPTIONAL));
    curl_easy_setopt(curl, CURLOPT_NETRC_FILE, req.netrc_file.c_str());
  }
  if (a->sftp) {
    long auth = CURLSSH_AUTH_PASSWORD | CURLSSH_AUTH_KEYBOARD;
    if (!req.ssh_key.empty()) {
      if (access(req.ssh_key.c_str(), R_OK) != 0) {
        *why = fmt::format("ssh_key {} is not readable", req.ssh_key);
        return false;
      }
      auth |= CURLSSH_AUTH_PUBLICKEY;
      curl_easy_setopt(curl, CURLOPT_SSH_PRIVATE_KEYFILE, req.ssh_key.c_str());
      // Empty: libssh2 derives the public key from the private one.
      curl_easy_setopt(curl, CURLOPT_SSH_PUBLIC_KEYFILE, "");
    }
    curl_easy_setopt(curl, CURLOPT_SSH_AUTH_TYPES, auth);
    if (!req.insecure) {
      static thread_local KnownHostsCheck check;
      check.host = a->host_port;
      check.file = req.known_hosts.empty() ? DefaultKnownHosts() : req.known_hosts;
      curl_easy_setopt(curl, CURLOPT_SSH_KNOWNHOSTS, check.file.c_str());
      curl_easy_setopt(curl, CURLOPT_SSH_KEYFUNCTION, HostKeyCallback);
      curl_easy_setopt(curl, CURLOPT_SSH_KEYDATA, &check);
    }
  }
  for (const auto& [name, value] : req.protocol_headers) {
    if (StartsWithNoCase(name, "if-modified-since")) a->if_modified_since = ParseHttpDate(value);
  }
  if (a->if_modified_since && !a->sftp) {
    curl_easy_setopt(curl, CURLOPT_TIMECONDITION, static_cast<long>(CURL_TIMECOND_IFMODSINCE));
    curl_easy_setopt(curl, CURLOPT_TIMEVALUE_LARGE, static_cast<curl_off_t>(*a->if_modified_since));
  }
  return true;
}

void Head(CURL* curl, const Attempt& a, HttpResponseHead* head) {
  head->status = a.range ? 206 : 200;
  char* eff = nullptr;
  curl_easy_getinfo(curl, CURLINFO_EFFECTIVE_URL, &eff);
  head->effective_url = eff ? eff : "";
  curl_off_t cl = -1;
  curl_easy_getinfo(curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
  if (cl >= 0 && !a.listing) head->content_length = static_cast<uint64_t>(cl);
  if (a.range && head->content_length)
    head->content_range =
        ContentRange{a.range->first, a.range->first + *head->content_length - 1, std::nullopt};
  curl_off_t t = -1;
  curl_easy_getinfo(curl, CURLINFO_FILETIME_T, &t);
  if (t >= 0 && !a.listing) {
    head->mtime = static_cast<int64_t>(t);
    // As an HTTP date: what a refresh sends back as If-Modified-Since.
    char buf[64];
    std::time_t tt = static_cast<std::time_t>(t);
    struct tm tm {};
    gmtime_r(&tt, &tm);
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    head->last_modified = buf;
  }
  if (a.listing) head->content_type = std::string(a.mlsd ? kMlsdListingType : kFtpListListingType);
}

bool NotModified(CURL* curl, const Attempt& a) {
  if (!a.if_modified_since) return false;
  if (!a.sftp) {
    long unmet = 0;
    curl_easy_getinfo(curl, CURLINFO_CONDITION_UNMET, &unmet);
    return unmet != 0;
  }
  curl_off_t t = -1;
  curl_easy_getinfo(curl, CURLINFO_FILETIME_T, &t);
  return t >= 0 && static_cast<int64_t>(t) <= *a.if_modified_since;
}

bool NotFound(CURL* curl, const Attempt& a, CURLcode rc) {
  if (rc == CURLE_REMOTE_FILE_NOT_FOUND) return true;
  if (a.sftp || rc == CURLE_OK) return false;
  // FTP's 550, however curl reports it (to the CWD: access denied; to SIZE
  // or RETR over TLS curl may take it for the answer to PASV).
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  return rc == CURLE_REMOTE_ACCESS_DENIED ||
         (code == 550 && (rc == CURLE_FTP_WEIRD_PASV_REPLY || rc == CURLE_FTP_COULDNT_RETR_FILE));
}

static size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

bool IsDirectory(CURL* curl, const Attempt& a) {
  if (a.listing) return false;
  std::string dir = a.url + "/";
  curl_easy_setopt(curl, CURLOPT_URL, dir.c_str());
  curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, 1L);
  // FTP: the CWD into it says; SFTP answers a body-less request for any
  // path, so its listing is read (and dropped).
  curl_easy_setopt(curl, CURLOPT_NOBODY, a.sftp ? 0L : 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Discard);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, Discard);
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, nullptr);
  curl_easy_setopt(curl, CURLOPT_TIMECONDITION, static_cast<long>(CURL_TIMECOND_NONE));
  curl_easy_setopt(curl, CURLOPT_RANGE, nullptr);
  return curl_easy_perform(curl) == CURLE_OK;
}

bool MlsdRefused(CURL* curl, const Attempt& a, CURLcode rc) {
  // Only the server's own refusal of the command: 500 (unknown), 502 (not
  // implemented), 550 (denied) to MLSD, which curl reports as a listing it
  // could not retrieve -- not a connection or login failure.
  if (!a.mlsd || rc != CURLE_FTP_COULDNT_RETR_FILE) return false;
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  if (code != 500 && code != 501 && code != 502 && code != 504 && code != 550) return false;
  std::lock_guard lock(mlsd_mu);
  if (NoMlsd().insert(a.host_port).second)
    spdlog::info("ftp {}: MLSD refused ({}); listing with LIST", a.host_port,
                 curl_easy_strerror(rc));
  return true;
}

}  // namespace originfs::file_server
