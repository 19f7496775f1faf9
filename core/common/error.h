// Error values used throughout core. Nothing in core throws for expected
// failures: functions return Result<T>, which carries an errno-style code and a
// human-readable message.
#pragma once

#include <cerrno>
#include <expected>
#include <string>

namespace originfs {

struct Error {
  int code = EIO;       // errno value reported to the kernel / caller
  std::string message;  // for logs; may contain a URL, never a credential
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> Fail(int code, std::string message) {
  return std::unexpected(Error{code, std::move(message)});
}

// Builds an Error from the current errno.
std::unexpected<Error> FailErrno(std::string what);

// Returns the error of a failed Result<T> expr from the enclosing function
// (which returns some Result<U>): ORIGINFS_TRY(store.Sync());
#define ORIGINFS_TRY(expr)                                                        \
  do {                                                                            \
    auto&& originfs_try_ = (expr);                                                \
    if (!originfs_try_) return std::unexpected(std::move(originfs_try_).error()); \
  } while (false)

// lhs = the value of the Result<T> expr, or returns its error:
// ORIGINFS_ASSIGN_OR_RETURN(int n, ParseInt(text));
#define ORIGINFS_ASSIGN_OR_RETURN(lhs, expr) \
  ORIGINFS_ASSIGN_OR_RETURN_(ORIGINFS_TRY_NAME_(__LINE__), lhs, expr)
#define ORIGINFS_TRY_NAME_(line) ORIGINFS_TRY_NAME2_(line)
#define ORIGINFS_TRY_NAME2_(line) originfs_try_##line
#define ORIGINFS_ASSIGN_OR_RETURN_(tmp, lhs, expr)          \
  auto tmp = (expr);                                        \
  if (!tmp) return std::unexpected(std::move(tmp).error()); \
  lhs = std::move(*tmp)

// Why a transfer from an origin failed. Mapped to errno in exactly one place
// (ToErrno) so "ENOENT only when the origin said not found" holds everywhere.
enum class FetchErrc {
  kNotFound,          // origin answered 404 / 410
  kHttpStatus,        // any other non-success status (5xx, 403, ...)
  kTimeout,           // connect or low-speed timeout
  kConnect,           // connection refused / reset
  kResolve,           // host name did not resolve
  kShortBody,         // fewer bytes than Content-Length, or body ended early
  kRedirectRefused,   // redirect to a protocol other than http/https
  kTooManyRedirects,  // redirect chain longer than the bound
  kTooLarge,          // object larger than max_object_size
  kTls,               // certificate or handshake failure
  kDigestMismatch,    // body does not match its checksum
  kLocalIo,           // writing the staging file failed
  kNoSpace,           // the bucket filesystem is full
  kAborted,           // shutting down
  kOther,
};

const char* ToString(FetchErrc e);
int ToErrno(FetchErrc e);

}  // namespace originfs
