#include "tests/support/web_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace originfs::testing {
namespace {

bool Installed(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

bool Listening(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log, const std::string& cwd) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  int in = open("/dev/null", O_RDONLY);
  if (out >= 0) {
    dup2(out, 1);
    dup2(out, 2);
  }
  if (in >= 0) dup2(in, 0);
  if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  _exit(127);
}

}  // namespace

const char* WebServerName(WebServerKind kind) {
  switch (kind) {
    case WebServerKind::kNginx:
      return "nginx";
    case WebServerKind::kNginxJson:
      return "nginx_json";
    case WebServerKind::kApache:
      return "apache";
    case WebServerKind::kLighttpd:
      return "lighttpd";
    case WebServerKind::kBusybox:
      return "busybox";
    case WebServerKind::kPython:
      return "python";
    case WebServerKind::kCaddy:
      return "caddy";
    case WebServerKind::kRcloneHttp:
      return "rclone_http";
    case WebServerKind::kRcloneWebdav:
      return "rclone_webdav";
    case WebServerKind::kApacheDav:
      return "apache_dav";
    case WebServerKind::kNginxTryFiles:
      return "nginx_try_files";
  }
  return "?";
}

WebServer::WebServer(WebServerKind kind, std::string root, std::string work_dir)
    : kind_(kind), root_(std::move(root)), work_(std::move(work_dir)) {
  access_log_ = work_ + "/access.log";
  for (int attempt = 0; attempt < 3 && !Start(); ++attempt) {
    if (error_.find("not installed") != std::string::npos) break;
  }
}

WebServer::~WebServer() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 200; ++i) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

std::string WebServer::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

bool WebServer::Start() {
  error_.clear();
  port_ = FreePort();
  std::string p = std::to_string(port_);
  std::string log = work_ + "/server.log";
  std::vector<std::string> argv;
  switch (kind_) {
    case WebServerKind::kNginx:
    case WebServerKind::kNginxJson:
    case WebServerKind::kNginxTryFiles: {
      if (!Installed("/usr/sbin/nginx")) return error_ = "nginx is not installed", false;
      std::string json = kind_ == WebServerKind::kNginxJson ? " autoindex_format json;"
                         : kind_ == WebServerKind::kNginxTryFiles
                             ? " try_files $uri $uri/ /index.html;"
                             : "";
      WriteText(work_ + "/nginx.conf",
                "daemon off; pid " + work_ + "/nginx.pid; error_log " + work_ +
                    "/error.log;\nevents {}\nhttp { access_log " + access_log_ +
                    "; client_body_temp_path " + work_ + "; proxy_temp_path " + work_ +
                    "; fastcgi_temp_path " + work_ + "; uwsgi_temp_path " + work_ +
                    "; scgi_temp_path " + work_ + ";\n server { listen 127.0.0.1:" + p + "; root " +
                    root_ + "; location / { autoindex " +
                    (kind_ == WebServerKind::kNginxTryFiles ? "off;" : "on;") + json + " } } }\n");
      argv = {"/usr/sbin/nginx", "-c", work_ + "/nginx.conf", "-p", work_};
      break;
    }
    case WebServerKind::kApache:
    case WebServerKind::kApacheDav: {
      if (!Installed("/usr/sbin/apache2")) return error_ = "apache2 is not installed", false;
      std::string m = "/usr/lib/apache2/modules/";
      bool dav = kind_ == WebServerKind::kApacheDav;
      std::string dav_modules = dav ? "LoadModule dav_module " + m +
                                          "mod_dav.so\nLoadModule dav_fs_module " + m +
                                          "mod_dav_fs.so\nDavLockDB " + work_ + "/davlock\n"
                                    : "";
      WriteText(work_ + "/apache.conf",
                "ServerRoot " + work_ + "\nPidFile " + work_ + "/apache.pid\nErrorLog " + work_ +
                    "/error.log\nListen 127.0.0.1:" + p + "\nLoadModule mpm_event_module " + m +
                    "mod_mpm_event.so\nLoadModule authz_core_module " + m +
                    "mod_authz_core.so\nLoadModule dir_module " + m +
                    "mod_dir.so\nLoadModule autoindex_module " + m + "mod_autoindex.so\n" +
                    dav_modules + "ServerName localhost\nCustomLog " + access_log_ +
                    " \"%r %>s\"\nDocumentRoot " + root_ + "\n<Directory " + root_ +
                    ">\n  Options " + (dav ? "-Indexes\n  Dav On" : "+Indexes") +
                    "\n  Require all granted\n</Directory>\n");
      argv = {"/usr/sbin/apache2", "-f", work_ + "/apache.conf", "-DFOREGROUND"};
      break;
    }
    case WebServerKind::kLighttpd: {
      if (!Installed("/usr/sbin/lighttpd")) return error_ = "lighttpd is not installed", false;
      WriteText(work_ + "/lighttpd.conf",
                "server.document-root = \"" + root_ + "\"\nserver.bind = \"127.0.0.1\"\n" +
                    "server.port = " + p +
                    "\nserver.modules = (\"mod_dirlisting\", \"mod_accesslog\")\n" +
                    "dir-listing.activate = \"enable\"\naccesslog.filename = \"" + access_log_ +
                    "\"\nserver.errorlog = \"" + work_ + "/error.log\"\n");
      argv = {"/usr/sbin/lighttpd", "-D", "-f", work_ + "/lighttpd.conf"};
      break;
    }
    case WebServerKind::kBusybox:
      if (!Installed("/bin/busybox")) return error_ = "busybox is not installed", false;
      argv = {"/bin/busybox", "httpd", "-f", "-v", "-p", "127.0.0.1:" + p, "-h", root_};
      access_log_ = log;
      break;
    case WebServerKind::kPython:
      argv = {"python3", "-m", "http.server", "--bind", "127.0.0.1", p, "--directory", root_};
      access_log_ = log;
      break;
    case WebServerKind::kCaddy:
      if (FindInPath("caddy").empty()) return error_ = "caddy is not installed", false;
      // Its state (autosaved config, certificates) in the work directory.
      argv = {"env",
              "HOME=" + work_,
              "XDG_DATA_HOME=" + work_,
              "XDG_CONFIG_HOME=" + work_,
              "caddy",
              "file-server",
              "--browse",
              "--root",
              root_,
              "--listen",
              "127.0.0.1:" + p,
              "--access-log"};
      access_log_ = log;
      break;
    case WebServerKind::kRcloneHttp:
    case WebServerKind::kRcloneWebdav:
      if (FindInPath("rclone").empty()) return error_ = "rclone is not installed", false;
      argv = {"rclone",
              "serve",
              kind_ == WebServerKind::kRcloneHttp ? "http" : "webdav",
              root_,
              "--addr",
              "127.0.0.1:" + p,
              "--config",
              work_ + "/rclone.conf",
              "--log-level",
              "DEBUG"};
      access_log_ = log;
      break;
  }
  pid_ = Spawn(argv, log, work_);
  for (int i = 0; i < 500; ++i) {
    if (Listening(port_)) return true;
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  error_ = std::string(WebServerName(kind_)) + " did not start: " + ss.str();
  return false;
}

int WebServer::Gets() const {
  std::ifstream in(access_log_);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (line.find(".originfs-probe-") != std::string::npos) continue;  // soft-404 probes
    if (line.find("\"GET ") != std::string::npos || line.starts_with("GET ") ||
        line.find(" GET ") != std::string::npos)
      ++n;
  }
  return n;
}

std::string FindInPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (std::size_t start = 0; start <= dirs.size();) {
    std::size_t colon = dirs.find(':', start);
    std::string dir = dirs.substr(start, colon == std::string::npos ? colon : colon - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (Installed(candidate)) return candidate;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return "";
}

MotoServer::MotoServer(std::string work_dir, int auth_after) : work_(std::move(work_dir)) {
  std::string moto = FindInPath("moto_server");
  if (moto.empty()) {
    error_ = "moto_server is not installed (pip install 'moto[server]')";
    return;
  }
  for (int attempt = 0; attempt < 3 && pid_ < 0; ++attempt) {
    port_ = FreePort();
    std::vector<std::string> argv = {"env"};
    if (auth_after >= 0)
      argv.push_back("INITIAL_NO_AUTH_ACTION_COUNT=" + std::to_string(auth_after));
    for (std::string a : {moto, std::string("-H"), std::string("127.0.0.1"), std::string("-p"),
                          std::to_string(port_)})
      argv.push_back(a);
    pid_t pid = Spawn(argv, work_ + "/moto.log", work_);
    for (int i = 0; i < 300; ++i) {  // moto takes a few seconds to import
      if (Listening(port_)) {
        pid_ = pid;
        break;
      }
      if (waitpid(pid, nullptr, WNOHANG) == pid) break;
      usleep(50'000);
    }
    if (pid_ < 0 && waitpid(pid, nullptr, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  if (pid_ < 0) error_ = "moto_server did not start (see " + work_ + "/moto.log)";
}

MotoServer::~MotoServer() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 100 && waitpid(pid_, nullptr, WNOHANG) == 0; ++i) usleep(20'000);
  if (waitpid(pid_, nullptr, WNOHANG) == 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

std::string MotoServer::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

}  // namespace originfs::testing
