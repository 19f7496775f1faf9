#include "core/common/error.h"

#include <cstring>

namespace originfs {

std::unexpected<Error> FailErrno(std::string what) {
  int e = errno;
  what += ": ";
  what += std::strerror(e);
  return std::unexpected(Error{e, std::move(what)});
}

const char* ToString(FetchErrc e) {
  switch (e) {
    case FetchErrc::kNotFound:
      return "not found";
    case FetchErrc::kHttpStatus:
      return "unexpected HTTP status";
    case FetchErrc::kTimeout:
      return "timeout";
    case FetchErrc::kConnect:
      return "connection failed";
    case FetchErrc::kResolve:
      return "host did not resolve";
    case FetchErrc::kShortBody:
      return "body shorter than announced";
    case FetchErrc::kRedirectRefused:
      return "redirect refused";
    case FetchErrc::kTooManyRedirects:
      return "too many redirects";
    case FetchErrc::kTooLarge:
      return "object too large";
    case FetchErrc::kTls:
      return "TLS failure";
    case FetchErrc::kDigestMismatch:
      return "checksum mismatch";
    case FetchErrc::kLocalIo:
      return "local I/O error";
    case FetchErrc::kNoSpace:
      return "no space left in bucket";
    case FetchErrc::kAborted:
      return "aborted";
    case FetchErrc::kOther:
      return "transfer failed";
  }
  return "unknown";
}

int ToErrno(FetchErrc e) {
  switch (e) {
    case FetchErrc::kNotFound:
      return ENOENT;
    case FetchErrc::kNoSpace:
      return ENOSPC;
    default:
      return EIO;
  }
}

}  // namespace originfs
