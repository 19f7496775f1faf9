// Real FTP, FTPS and SFTP servers from Debian (vsftpd, proftpd, OpenSSH's
// sshd) serving a directory read-only on 127.0.0.1, for the FTP/SFTP origins.
// Like web_server.h: each runs in the foreground as our child, on a port the
// OS picked free just before (retried if another process takes it first),
// with its config, keys and logs in a work directory. Stop() and the
// destructor end exactly that pid and the session processes it forked (found
// under /proc before the signal), waiting a bounded time before SIGKILL.
//
// The servers run sessions as an unprivileged uid, so the constructors add
// o+rx to the served directory and o+x to each of its ancestors (nothing
// else: files must be world-readable, as files written with umask 022 are).
// All need root; error() says so otherwise.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace originfs::testing {

// A command's end, for the kit's own tools and tests that run clients (curl).
struct ToolResult {
  int exit_code = -1;      // exit status, or -1 when killed by a signal or timed out
  bool timed_out = false;  // still running at the deadline (then SIGKILLed)
  std::string out, err;
};

// Runs argv[0] (searched in PATH), stdin from /dev/null, env added to ours;
// after timeout that process, and only it, is SIGKILLed.
ToolResult RunTool(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                   const std::map<std::string, std::string>& env = {});

// What every kit server offers. Not copyable: it owns a process.
class FileServer {
 public:
  virtual ~FileServer();
  FileServer(const FileServer&) = delete;
  FileServer& operator=(const FileServer&) = delete;

  // Empty when serving; otherwise why not ("proftpd is not installed", ...).
  const std::string& error() const { return error_; }
  // The served directory as a URL, ending in "/".
  virtual std::string url() const = 0;
  int port() const { return port_; }
  // A login that reads the directory; password() is "" for anonymous FTP.
  const std::string& user() const { return user_; }
  const std::string& password() const { return password_; }

  // Ends the server and every session it forked (a client mid-transfer sees
  // its connections drop). Bounded; true when nothing is left running.
  bool Stop();
  // Starts it again on the same port (after Stop()); false, with error(), if
  // it did not come up within a bounded wait.
  bool Restart();
  bool running() const { return pid_ > 0; }

 protected:
  FileServer(std::string root, std::string work_dir);
  // Writes the config for port_ and returns the command line, or sets error_.
  virtual std::vector<std::string> Command() = 0;
  // Picks a port, writes the config and starts; retried on a port race.
  void StartOnFreePort();
  bool Launch();

  std::string root_, work_, error_, user_, password_, name_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// vsftpd: plain FTP, LIST only (no MLSD, on purpose: clients must parse LIST).
// Anonymous login only (user "anonymous", any password): vsftpd's password
// logins go through PAM, which would need a host PAM service; a login as any
// other user is refused (530). Found at /usr/sbin/vsftpd or, as Debian's
// vsftpd conflicts with proftpd, at the unpacked copy .ci/install-deps makes
// (kVsftpdUnpacked).
inline constexpr const char* kVsftpdUnpacked = "/opt/originfs-test/vsftpd/usr/sbin/vsftpd";

class VsftpdServer : public FileServer {
 public:
  // max_rate_bytes > 0 throttles each transfer (anon_max_rate) so a test can
  // act while one is under way.
  VsftpdServer(std::string root, std::string work_dir, long max_rate_bytes = 0);
  std::string url() const override;  // "ftp://127.0.0.1:PORT/" (chrooted: / is root)

 private:
  std::vector<std::string> Command() override;
  long max_rate_bytes_;
};

struct ProftpdOptions {
  bool tls = false;      // explicit TLS (AUTH TLS) required for login and data
  bool mlsd = true;      // false: MLSD/MLST denied (550) and not advertised in FEAT
  int max_rate_kib = 0;  // > 0: TransferRate RETR, in KiB/s
};

// proftpd with a virtual user (AuthUserFile; no host account) chrooted to
// the directory; MLSD and LIST. With tls, the certificate is signed by a CA
// made for this server (ca_file()), for 127.0.0.1 and localhost.
class ProftpdServer : public FileServer {
 public:
  ProftpdServer(std::string root, std::string work_dir, ProftpdOptions options = {});
  std::string url() const override;  // "ftp://127.0.0.1:PORT/" (chrooted: / is root)
  const std::string& ca_file() const { return ca_file_; }  // PEM; "" without tls

 private:
  std::vector<std::string> Command() override;
  ProftpdOptions options_;
  std::string ca_file_;
};

// OpenSSH's sshd serving SFTP only (internal-sftp, starting in the directory;
// no shell, no forwarding). Not chrooted: OpenSSH refuses a chroot below
// /tmp (world-writable), so SFTP paths are absolute and url() holds the
// directory. Logins: user() with password() or with client_key(), both for a
// temporary host account (useradd, removed by userdel in the destructor;
// accounts of kit processes that died are removed at the next start). If
// useradd fails, user() is "root" with the key only and password() is "".
class SshdServer : public FileServer {
 public:
  SshdServer(std::string root, std::string work_dir);
  ~SshdServer() override;
  std::string url() const override;  // "sftp://127.0.0.1:PORT" + root + "/"
  const std::string& client_key() const { return client_key_; }  // private key, 0600
  std::string client_public_key() const { return client_key_ + ".pub"; }
  // "[127.0.0.1]:PORT ssh-ed25519 AAAA..." in a file, for CURLOPT_SSH_KNOWNHOSTS.
  const std::string& known_hosts() const { return known_hosts_; }
  // The host key's SHA-256 fingerprint, base64 without padding
  // (CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256, curl --hostpubsha256).
  const std::string& host_key_sha256() const { return host_sha256_; }
  // The host key's MD5 fingerprint, 32 hex digits (curl --hostpubmd5).
  const std::string& host_key_md5() const { return host_md5_; }

 private:
  std::vector<std::string> Command() override;
  bool Prepare();
  std::string client_key_, known_hosts_, host_sha256_, host_md5_, host_pub_;
  bool made_user_ = false;
};

// Changing a file a server is sending (the file is simply in the served
// directory). Replace: a new inode renamed over path, so a transfer already
// open keeps the old bytes and the next one gets the new. Rewrite: the same
// inode truncated and rewritten, so a transfer under way reads a mix.
void ReplaceFileAtomically(const std::string& path, const std::string& contents);
void RewriteFileInPlace(const std::string& path, const std::string& contents);

}  // namespace originfs::testing
