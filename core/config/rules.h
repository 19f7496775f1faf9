// Back-source rules: which origin serves which part of the key space.
//
// A key is a path below the mount point without the leading '/'. Rules are
// tried in file order; every rule whose prefix matches is a candidate, and a
// 404 from one candidate falls through to the next.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/common/error.h"

namespace originfs {

// How names that the origin does not know as files are resolved when they
// might be directories (see README "Directories").
enum class DirMode {
  kProbe,    // directory only if the origin says so (redirect to key/, or key/ answers)
  kNoExt,    // like kProbe, and a 404 name without '.' in its last segment is a directory
  kVirtual,  // like kProbe, and any 404 name is a directory
};

// Where the names of a directory under a rule come from, besides the bucket.
enum class ListMode {
  kAuto,       // the origin's index page for the directory URL, if it serves one
  kNone,       // none: only names a lookup asked for
  kAutoindex,  // the origin's index page (nginx, Apache, lighttpd, python http.server)
  kManifest,   // a manifest of every key (Rule::manifest)
  kS3,         // ListObjectsV2 with delimiter=/ (type = "s3"; what "auto" means there)
  kWebdav,     // WebDAV PROPFIND with Depth: 1 ("auto" tries it where no index page is served)
};

// How a fetched body is checked before it is linked into the bucket.
enum class Verify {
  kNone,
  kContentMd5,  // the Content-MD5 header (base64 MD5) must match
  kEtagMd5,     // the ETag must be a plain MD5 (S3 style) and match
  // type = "s3"'s default: a single-part ETag (a plain MD5) must match; a
  // multipart one ("...-N") is no MD5 of the body and is not checked.
  kS3Etag,
};

// What a "soft 404" looks like: an origin that answers a missing path with
// 200 and some fixed page (nginx `try_files $uri $uri/ /index.html`). A
// response matches when it matches every field that is set; within a field,
// any listed value matches. Decided from the response head alone.
struct Soft404 {
  std::vector<std::string> content_types;  // media types, lowercase, without parameters
  std::vector<uint64_t> sizes;             // Content-Length
  std::vector<std::string> etags;          // without W/ and quotes
  bool Matches(std::string_view content_type, std::optional<uint64_t> size,
               std::string_view etag) const;
  bool operator==(const Soft404&) const = default;
  // The page one response is (what a probe of a name that cannot exist got).
  static Soft404 Of(std::string_view content_type, std::optional<uint64_t> size,
                    std::string_view etag);
};

enum class OriginType { kHttp, kS3 };

// Keys of an S3-compatible origin, from credentials_file or the environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). Never
// logged or shown: `originfs check` names only where they came from.
struct S3Credentials {
  std::string access_key, secret_key, session_token;
  std::string source;  // "environment" or "FILE [PROFILE]"
};

// The login for a file-server origin (credentials_file). Never logged or
// shown: `originfs check` names only the file.
struct FileLogin {
  std::string user, password;
  std::string source;  // the file
};

struct Rule {
  std::string prefix;  // plain string prefix of the key; "" matches all
  std::string suffix;  // and plain string suffix ("" matches all)
  std::string origin;  // the primary origin, == origins[0]
  std::vector<std::string>
      origins;  // failover order; "http(s)://host[:port][/base]", no trailing '/'
  // type = "s3": an S3-compatible bucket, every request signed (SigV4).
  OriginType type = OriginType::kHttp;
  std::string s3_bucket;      // bucket = "name" (else the origin URL's path names it)
  bool virtual_host = false;  // https://BUCKET.endpoint/KEY instead of endpoint/BUCKET/KEY
  std::string region = "us-east-1";
  std::string credentials_file;  // AWS shared-credentials file (mode 0600)
  std::string profile = "default";
  std::optional<S3Credentials> credentials;  // resolved at load; none: anonymous requests
  // File servers (ftp://, ftps://, sftp://; file_origin.h): the login from
  // credentials_file or a netrc file; for sftp a private key (ssh_key) and
  // the known_hosts file the server's key must be in (default ~/.ssh/known_hosts).
  std::optional<FileLogin> login;
  std::string netrc, ssh_key, known_hosts;
  bool writeback = true;                 // keep fetched objects in the bucket
  uint64_t cache_max_size = 1ull << 30;  // writeback = false: bound of the object cache
  DirMode dirs = DirMode::kProbe;
  ListMode list = ListMode::kAuto;
  int list_ttl = 300;  // seconds a directory listing from the origin is trusted
  // Seconds after a listing was read that a name it lacks is taken as absent
  // without a request; after that the name is asked for by path (a file new
  // at the origin). Unset: the mount's negative_ttl (list_ttl for a manifest).
  std::optional<int> absent_ttl;
  // A landed file unchanged locally is checked with a conditional GET when
  // opened, at most once per this many seconds (0: at every open, which
  // waits for the answer); unset: never (revalidate = "DURATION").
  std::optional<int64_t> revalidate;
  // state = "retired": the migration of the prefix is done. Nothing is sent
  // to its origins any more, and keys it matches match no later rule either:
  // the prefix is a plain directory. (state = "active", the default.)
  bool retired = false;
  // A name nothing is known about while every origin of the rule is
  // unreachable: EIO (false, the default), or absent (true: ENOENT, so it can
  // be created; it may hide a file the origin has). offline = "error" | "absent".
  bool offline_absent = false;
  std::string manifest;  // list = "manifest": http(s) URL or local path of the key list
  std::optional<std::string> replace_prefix;                 // replaces `prefix` in the origin path
  std::vector<std::pair<std::string, std::string>> headers;  // sent to the origin; never logged
  bool follow_redirects = true;
  std::optional<long> max_redirects;
  // Where else redirects may lead ("host", "host:port", "*.domain", "*";
  // "http://" in front allows plain http after https), besides the rule's
  // origins' hosts (Mirror::RequestFor). Headers and signatures go to the
  // origins only.
  std::vector<std::string> redirect_hosts;
  Verify verify = Verify::kNone;
  std::optional<double> connect_timeout;  // seconds
  std::optional<long> timeout;            // seconds without progress before a transfer fails
  std::optional<int> retries;
  std::optional<uint64_t> max_object_size;
  int max_concurrent = 0;  // downloads in flight for this rule; 0: no limit
  std::string ca_file;
  bool insecure = false;                         // skip TLS verification (never the default)
  bool mtime_from_origin = true;                 // mtime = Last-Modified (else: fetch time)
  std::vector<int> fallthrough_on = {404, 410};  // statuses that try the next rule
  std::optional<Soft404> soft_404;               // 200 answers that mean "not found"
  // Without soft_404: learn the origin's answer for a name that cannot exist
  // (mirror/soft404.cc); detect_soft_404 = false turns it off.
  bool detect_soft_404 = true;
  std::size_t index = 0;  // position in the file, 0-based

  // "rule #2 (prefix \"img/\")" for messages.
  std::string Describe() const;
  bool Matches(std::string_view key) const {
    return key.size() >= prefix.size() + suffix.size() && key.starts_with(prefix) &&
           key.ends_with(suffix);
  }
  // The path requested from the origin for key (before percent-encoding).
  std::string OriginPath(std::string_view key) const {
    if (!replace_prefix) return std::string(key);
    return *replace_prefix + std::string(key.substr(prefix.size()));
  }
  bool FallsThrough(long status) const {
    for (int s : fallthrough_on) {
      if (s == status) return true;
    }
    return false;
  }
};

class RuleSet {
 public:
  RuleSet() = default;

  // Parses a TOML rules document. Refuses unknown keys, wrong types, bad or
  // non-http(s) URLs and duplicate prefixes; the message names the rule.
  static Result<RuleSet> Parse(std::string_view toml_text, std::string_view source_name);
  // Loads a rules file. A file that holds credentials (headers) must not be
  // readable by group or others, as ssh insists for private keys.
  static Result<RuleSet> Load(const std::string& path);
  // The origin=URL shortcut: one rule with an empty prefix.
  static Result<RuleSet> SingleOrigin(std::string_view url);

  const std::vector<Rule>& rules() const { return rules_; }
  bool empty() const { return rules_.empty(); }
  // True when some rule revalidates landed files (revalidate).
  bool Revalidates() const {
    for (const Rule& r : rules_)
      if (r.revalidate && !r.retired) return true;
    return false;
  }

  // Candidates for key, in the order they must be tried.
  std::vector<const Rule*> Match(std::string_view key) const;

  // True when key is a proper directory component of some rule's prefix,
  // e.g. "img" and "img/2024" for prefix "img/2024/".
  bool PrefixImpliesDirectory(std::string_view key) const;

  // Human-readable listing, one rule per line (used by `originfs check`).
  std::string Format() const;

 private:
  std::vector<Rule> rules_;
};

// Checks that url is an absolute http:// or https:// URL with a host and no
// query or fragment. Returns the URL with any trailing '/' removed.
Result<std::string> NormalizeOriginUrl(std::string_view url);

}  // namespace originfs
