// Real web servers from Debian (nginx, Apache, lighttpd, busybox httpd,
// python's http.server, caddy, rclone) serving a directory on 127.0.0.1, for tests that
// need what real origins send (index pages, redirects of directory URLs).
// Each runs in the foreground as our child, on a port the OS picked free
// just before, with its config and logs in a work directory; the destructor
// stops exactly that pid.
#pragma once

#include <sys/types.h>

#include <string>

namespace originfs::testing {

enum class WebServerKind {
  kNginx,
  kNginxJson,
  kApache,
  kLighttpd,
  kBusybox,
  kPython,
  kCaddy,          // caddy file-server --browse (HTML, or JSON when asked)
  kRcloneHttp,     // rclone serve http
  kRcloneWebdav,   // rclone serve webdav
  kApacheDav,      // Apache with mod_dav, directory indexes off (PROPFIND only)
  kNginxTryFiles,  // nginx with try_files $uri $uri/ /index.html: a soft-404 origin
};

const char* WebServerName(WebServerKind kind);

class WebServer {
 public:
  // Serves root (which must exist) with directory listings on, where the
  // server has them. work_dir must exist and be empty.
  WebServer(WebServerKind kind, std::string root, std::string work_dir);
  ~WebServer();
  WebServer(const WebServer&) = delete;
  WebServer& operator=(const WebServer&) = delete;

  // Empty when serving; otherwise why not (e.g. "nginx is not installed").
  const std::string& error() const { return error_; }
  std::string url() const;  // "http://127.0.0.1:PORT"
  // GET requests the server logged so far (nginx, Apache, lighttpd, python),
  // soft-404 probes (core/mirror/soft404.cc) aside.
  int Gets() const;

 private:
  bool Start();
  WebServerKind kind_;
  std::string root_, work_;
  std::string error_;
  std::string access_log_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// moto_server (pip's moto: an S3 implementation) on 127.0.0.1, for
// S3-compatible origins. With auth_after >= 0 it checks signatures once that
// many unauthenticated calls were made (enough to create an IAM user and its
// key); otherwise it accepts any request.
class MotoServer {
 public:
  MotoServer(std::string work_dir, int auth_after = -1);
  ~MotoServer();
  MotoServer(const MotoServer&) = delete;
  MotoServer& operator=(const MotoServer&) = delete;

  // Empty when serving; otherwise why not (e.g. "moto_server is not installed").
  const std::string& error() const { return error_; }
  std::string url() const;  // "http://127.0.0.1:PORT"

 private:
  std::string work_, error_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// The path of program in PATH, or "".
std::string FindInPath(const std::string& program);

}  // namespace originfs::testing
