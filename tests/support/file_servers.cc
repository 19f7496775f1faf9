#include "tests/support/file_servers.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "tests/support/temp_dir.h"

namespace originfs::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kPassivePorts = 16;
constexpr const char* kUserPrefix = "okit-";  // temporary sshd accounts: okit-PID-N

bool Executable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

sockaddr_in Loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return a;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Loopback(0);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

bool Bindable(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Loopback(port);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

// The first of kPassivePorts consecutive ports that are free now, below the
// kernel's ephemeral range so that ports the OS hands out rarely collide.
int PassiveBase() {
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(20000, 32000 - kPassivePorts);
  for (int attempt = 0; attempt < 50; ++attempt) {
    int base = pick(rng);
    bool all = true;
    for (int p = base; all && p < base + kPassivePorts; ++p) all = Bindable(p);
    if (all) return base;
  }
  return 30000;
}

bool Listening(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Loopback(port);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

std::string Slurp(const std::string& path) { return ReadFile(path).value_or(""); }

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// Parent pid of pid from /proc, and whether it is still a live process
// (zombies count as gone: they hold no socket and no file).
bool ProcStat(pid_t pid, pid_t* ppid) {
  std::string stat = Slurp("/proc/" + std::to_string(pid) + "/stat");
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos || close_paren + 4 > stat.size()) return false;
  char state = stat[close_paren + 2];
  if (ppid) *ppid = static_cast<pid_t>(std::atol(stat.c_str() + close_paren + 4));
  return state != 'Z' && state != 'X';
}

// Every live descendant of root (sessions the server forked, which may have
// called setsid and so are not in its process group).
std::set<pid_t> Descendants(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
      pid_t ppid = 0;
      if (pid > 0 && ProcStat(pid, &ppid)) children.emplace(ppid, pid);
    }
    closedir(d);
  }
  std::set<pid_t> out;
  std::vector<pid_t> todo = {root};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    auto [lo, hi] = children.equal_range(p);
    for (auto it = lo; it != hi; ++it)
      if (out.insert(it->second).second) todo.push_back(it->second);
  }
  return out;
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  int in = open("/dev/null", O_RDONLY);
  if (out >= 0) {
    dup2(out, 1);
    dup2(out, 2);
  }
  if (in >= 0) dup2(in, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  _exit(127);
}

// o+rx on dir, o+x on its ancestors: sessions run as unprivileged uids.
void MakeReachable(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec);
  fs::permissions(p, fs::perms::others_read | fs::perms::others_exec, fs::perm_options::add, ec);
  for (p = p.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path())
    fs::permissions(p, fs::perms::others_exec, fs::perm_options::add, ec);
}

// A crypt(3) hash of password ("-1": MD5, "-6": SHA-512), or "".
std::string HashPassword(const std::string& password, const std::string& kind) {
  ToolResult r = RunTool({"openssl", "passwd", kind, password}, 20s);
  return r.exit_code == 0 ? Trim(r.out) : "";
}

std::string OwnerIds(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "0:0";
  return std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid);
}

// Removes okit-PID-N accounts whose process is gone (a test that crashed).
void RemoveStaleUsers() {
  std::istringstream passwd(Slurp("/etc/passwd"));
  for (std::string line; std::getline(passwd, line);) {
    if (!line.starts_with(kUserPrefix)) continue;
    std::string name = line.substr(0, line.find(':'));
    pid_t owner = static_cast<pid_t>(std::atol(name.c_str() + std::strlen(kUserPrefix)));
    if (owner > 0 && kill(owner, 0) != 0 && errno == ESRCH) RunTool({"userdel", name}, 30s);
  }
}

}  // namespace

ToolResult RunTool(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                   const std::map<std::string, std::string>& env) {
  ToolResult result;
  char out_path[] = "/tmp/originfs-tool-out-XXXXXX";
  char err_path[] = "/tmp/originfs-tool-err-XXXXXX";
  int out = mkstemp(out_path), err = mkstemp(err_path);
  pid_t pid = fork();
  if (pid == 0) {
    int in = open("/dev/null", O_RDONLY);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out);
  close(err);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  bool reaped = false;
  while (pid > 0 && !(reaped = waitpid(pid, &status, WNOHANG) == pid)) {
    if (std::chrono::steady_clock::now() > deadline) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      reaped = waitpid(pid, &status, 0) == pid;
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  if (reaped && !result.timed_out && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  result.out = Slurp(out_path);
  result.err = Slurp(err_path);
  unlink(out_path);
  unlink(err_path);
  return result;
}

FileServer::FileServer(std::string root, std::string work_dir)
    : root_(std::move(root)), work_(std::move(work_dir)) {
  if (geteuid() != 0) error_ = "the FTP/SFTP servers need root";
  MakeReachable(root_);
}

FileServer::~FileServer() { Stop(); }

void FileServer::StartOnFreePort() {
  if (!error_.empty()) return;
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = FreePort();
    if (Launch() || error_.find("not installed") != std::string::npos) return;
  }
}

bool FileServer::Launch() {
  error_.clear();
  std::vector<std::string> argv = Command();
  if (!error_.empty()) return false;
  std::string log = work_ + "/" + name_ + ".log";
  pid_ = Spawn(argv, log);
  for (int i = 0; i < 1000; ++i) {  // 10 s at most
    if (Listening(port_)) return true;
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  Stop();
  error_ = name_ + " did not start on port " + std::to_string(port_) + ": " + Slurp(log);
  return false;
}

bool FileServer::Stop() {
  if (pid_ <= 0) return true;
  // Freeze the tree first so no session forks while we collect it.
  std::set<pid_t> tree = {pid_};
  for (int round = 0; round < 5; ++round) {
    for (pid_t p : tree) kill(p, SIGSTOP);
    std::set<pid_t> more = Descendants(pid_);
    for (pid_t p : tree)
      if (p != pid_)
        for (pid_t q : Descendants(p)) more.insert(q);
    size_t before = tree.size();
    tree.insert(more.begin(), more.end());
    if (tree.size() == before) break;
  }
  for (pid_t p : tree) kill(p, SIGKILL);
  pid_t main = pid_;
  pid_ = -1;
  bool reaped = false;
  for (int i = 0; i < 500 && !reaped; ++i) {  // 5 s at most
    reaped = waitpid(main, nullptr, WNOHANG) == main;
    if (!reaped) std::this_thread::sleep_for(10ms);
  }
  bool all_gone = reaped;
  for (pid_t p : tree) {
    if (p == main) continue;
    for (int i = 0; i < 200 && ProcStat(p, nullptr); ++i) std::this_thread::sleep_for(10ms);
    all_gone = all_gone && !ProcStat(p, nullptr);
  }
  return all_gone;
}

bool FileServer::Restart() {
  Stop();
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (Launch()) return true;
    std::this_thread::sleep_for(200ms);  // the old listener's port, briefly
  }
  return false;
}

// ---- vsftpd ----------------------------------------------------------------

VsftpdServer::VsftpdServer(std::string root, std::string work_dir, long max_rate_bytes)
    : FileServer(std::move(root), std::move(work_dir)), max_rate_bytes_(max_rate_bytes) {
  name_ = "vsftpd";
  user_ = "anonymous";
  StartOnFreePort();
}

std::string VsftpdServer::url() const { return "ftp://127.0.0.1:" + std::to_string(port_) + "/"; }

std::vector<std::string> VsftpdServer::Command() {
  std::string binary = "/usr/sbin/vsftpd";
  if (!Executable(binary)) binary = kVsftpdUnpacked;
  if (!Executable(binary))
    return error_ = "vsftpd is not installed (.ci/install-deps unpacks it)",
           std::vector<std::string>{};
  std::string empty = work_ + "/vsftpd-empty";
  mkdir(empty.c_str(), 0755);
  int pasv = PassiveBase();
  std::string conf = work_ + "/vsftpd.conf";
  // Anonymous sessions run as "daemon" (its home, which vsftpd enters first,
  // exists everywhere) chrooted to root.
  std::ofstream(conf) << "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port="
                      << port_ << "\nbackground=NO\nanonymous_enable=YES\nno_anon_password=YES\n"
                      << "anon_root=" << root_ << "\nftp_username=daemon\nlocal_enable=NO\n"
                      << "write_enable=NO\npasv_enable=YES\npasv_address=127.0.0.1\n"
                      << "pasv_min_port=" << pasv << "\npasv_max_port=" << pasv + kPassivePorts - 1
                      << "\nseccomp_sandbox=NO\nsecure_chroot_dir=" << empty
                      << "\nxferlog_enable=YES\ndual_log_enable=YES\nvsftpd_log_file=" << work_
                      << "/vsftpd.xfer.log\nxferlog_file=" << work_
                      << "/vsftpd.xferlog\nanon_max_rate=" << std::max(0L, max_rate_bytes_) << "\n";
  return {binary, conf};
}

// ---- proftpd ---------------------------------------------------------------

ProftpdServer::ProftpdServer(std::string root, std::string work_dir, ProftpdOptions options)
    : FileServer(std::move(root), std::move(work_dir)), options_(options) {
  name_ = "proftpd";
  user_ = "originfs";
  password_ = "kit-password";
  if (!error_.empty()) return;
  if (!Executable("/usr/sbin/proftpd")) {
    error_ = "proftpd is not installed (package proftpd-core)";
    return;
  }
  if (options_.tls && access("/usr/lib/proftpd/mod_tls.so", R_OK) != 0) {
    error_ = "proftpd's mod_tls is not installed (package proftpd-mod-crypto)";
    return;
  }
  std::string hash = HashPassword(password_, "-1");
  if (hash.empty()) {
    error_ = "openssl passwd failed";
    return;
  }
  // The virtual user has the directory owner's ids, so it reads what the
  // owner can; proftpd refuses uid 0 unless RootLogin is on.
  std::string ids = OwnerIds(root_);
  std::ofstream(work_ + "/ftpd.passwd")
      << user_ << ":" << hash << ":" << ids << "::" << root_ << ":/usr/sbin/nologin\n";
  chmod((work_ + "/ftpd.passwd").c_str(), 0600);
  std::ofstream(work_ + "/ftpd.group") << "originfs:x:" << ids.substr(ids.find(':') + 1) << ":\n";
  if (options_.tls) {
    std::string w = work_ + "/";
    ca_file_ = w + "ca.pem";
    std::ofstream(w + "cert.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    for (const auto& argv : std::vector<std::vector<std::string>>{
             {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-subj",
              "/CN=originfs test CA", "-keyout", w + "ca.key", "-out", ca_file_},
             {"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
              "-keyout", w + "server.key", "-out", w + "server.csr"},
             {"openssl", "x509", "-req", "-in", w + "server.csr", "-CA", ca_file_, "-CAkey",
              w + "ca.key", "-CAcreateserial", "-days", "3", "-extfile", w + "cert.ext", "-out",
              w + "server.pem"}}) {
      ToolResult r = RunTool(argv, 60s);
      if (r.exit_code != 0) {
        error_ = "openssl failed: " + r.err;
        return;
      }
    }
  }
  StartOnFreePort();
}

std::string ProftpdServer::url() const { return "ftp://127.0.0.1:" + std::to_string(port_) + "/"; }

std::vector<std::string> ProftpdServer::Command() {
  std::string w = work_ + "/";
  unlink((w + "proftpd.scoreboard").c_str());  // a killed server's
  int pasv = PassiveBase();
  std::ostringstream c;
  c << "ServerType standalone\nServerName \"originfs test\"\nDefaultAddress 127.0.0.1\nPort "
    << port_ << "\nUseIPv6 off\nUser nobody\nGroup nogroup\nWtmpLog off\nUseReverseDNS off\n"
    << "DelayTable none\nScoreboardFile " << w << "proftpd.scoreboard\nPidFile " << w
    << "proftpd.pid\nSystemLog " << w << "proftpd.system.log\nTransferLog " << w
    << "proftpd.xfer.log\nAuthOrder mod_auth_file.c\nAuthUserFile " << w
    << "ftpd.passwd\nAuthGroupFile " << w << "ftpd.group\nRequireValidShell off\n"
    << "RootLogin on\nDefaultRoot " << root_ << "\nPassivePorts " << pasv << " "
    << pasv + kPassivePorts - 1 << "\nMasqueradeAddress 127.0.0.1\nAllowOverwrite off\n"
    << "<Limit WRITE SITE_CHMOD>\n  DenyAll\n</Limit>\n";
  if (!options_.mlsd) c << "FactsAdvertise off\n<Limit MLSD MLST>\n  DenyAll\n</Limit>\n";
  if (options_.max_rate_kib > 0) c << "TransferRate RETR " << options_.max_rate_kib << "\n";
  if (options_.tls)
    c << "LoadModule mod_tls.c\nTLSEngine on\nTLSRequired on\nTLSProtocol TLSv1.2 TLSv1.3\n"
      << "TLSRSACertificateFile " << w << "server.pem\nTLSRSACertificateKeyFile " << w
      << "server.key\nTLSLog " << w << "proftpd.tls.log\nTLSOptions NoSessionReuseRequired\n";
  std::ofstream(w + "proftpd.conf") << c.str();
  return {"/usr/sbin/proftpd", "-n", "-c", w + "proftpd.conf"};
}

// ---- sshd ------------------------------------------------------------------

SshdServer::SshdServer(std::string root, std::string work_dir)
    : FileServer(std::move(root), std::move(work_dir)) {
  name_ = "sshd";
  if (!error_.empty()) return;
  if (!Executable("/usr/sbin/sshd")) {
    error_ = "sshd is not installed (package openssh-server)";
    return;
  }
  if (Prepare()) StartOnFreePort();
}

SshdServer::~SshdServer() {
  Stop();  // its sessions first: userdel refuses a logged-in user
  if (made_user_) RunTool({"userdel", user_}, 30s);
}

bool SshdServer::Prepare() {
  mkdir("/run/sshd", 0755);  // privilege separation directory; harmless to leave
  std::string w = work_ + "/";
  client_key_ = w + "client_key";
  for (const std::string& key : {w + "host_key", client_key_}) {
    ToolResult r = RunTool({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key}, 30s);
    if (r.exit_code != 0) return error_ = "ssh-keygen failed: " + r.err, false;
  }
  chmod(client_key_.c_str(), 0600);
  std::filesystem::copy_file(client_key_ + ".pub", w + "authorized_keys",
                             std::filesystem::copy_options::overwrite_existing);
  std::istringstream pub(Slurp(w + "host_key.pub"));
  std::string type, blob;
  pub >> type >> blob;
  host_pub_ = type + " " + blob;
  auto fingerprint = [&](const char* hash) {
    ToolResult r = RunTool({"ssh-keygen", "-l", "-E", hash, "-f", w + "host_key.pub"}, 30s);
    std::istringstream line(r.out);
    std::string bits, fp;
    line >> bits >> fp;
    return fp.substr(fp.find(':') + 1);  // after "SHA256:" or "MD5:"
  };
  host_sha256_ = fingerprint("sha256");
  for (char ch : fingerprint("md5"))
    if (ch != ':') host_md5_ += ch;

  RemoveStaleUsers();
  static std::atomic<int> serial{0};
  std::string name = kUserPrefix + std::to_string(getpid()) + "-" + std::to_string(serial++);
  std::string password = "kit-password";
  std::string hash = HashPassword(password, "-6");
  for (int attempt = 0; attempt < 5 && !made_user_ && !hash.empty(); ++attempt) {
    // -N -g nogroup: no group of its own to remove later; -M: no home.
    ToolResult r = RunTool({"useradd", "-M", "-N", "-g", "nogroup", "-d", "/", "-s",
                            "/usr/sbin/nologin", "-p", hash, name},
                           30s);
    made_user_ = r.exit_code == 0;
    if (!made_user_) std::this_thread::sleep_for(200ms);  // /etc/passwd locked by another
  }
  user_ = made_user_ ? name : "root";
  password_ = made_user_ ? password : "";
  return true;
}

std::string SshdServer::url() const {
  return "sftp://127.0.0.1:" + std::to_string(port_) + root_ + "/";
}

std::vector<std::string> SshdServer::Command() {
  std::string w = work_ + "/";
  known_hosts_ = w + "known_hosts";
  std::ofstream(known_hosts_) << "[127.0.0.1]:" << port_ << " " << host_pub_ << "\n";
  std::ofstream(w + "sshd_config")
      << "ListenAddress 127.0.0.1:" << port_ << "\nHostKey " << w << "host_key\nPidFile " << w
      << "sshd.pid\nAuthorizedKeysFile " << w << "authorized_keys\nStrictModes no\nUsePAM no\n"
      << "PermitRootLogin prohibit-password\nPasswordAuthentication yes\n"
      << "KbdInteractiveAuthentication no\nAllowUsers " << user_
      << "\nSubsystem sftp internal-sftp\nForceCommand internal-sftp -d " << root_
      << "\nAllowTcpForwarding no\nX11Forwarding no\nPermitTTY no\nPrintMotd no\n";
  return {"/usr/sbin/sshd", "-D", "-e", "-f", w + "sshd_config"};
}

void ReplaceFileAtomically(const std::string& path, const std::string& contents) {
  std::string tmp = path + ".kit-replacing";
  WriteFile(tmp, contents);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    std::perror("rename");
    std::abort();
  }
}

void RewriteFileInPlace(const std::string& path, const std::string& contents) {
  WriteFile(path, contents);  // O_TRUNC on the same inode
}

}  // namespace originfs::testing
