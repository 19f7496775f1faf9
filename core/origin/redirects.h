// Redirects kept safe (HttpRequest::redirect_policy): resolving a Location
// against the URL it answered, and deciding whether the target is allowed
// and trusted with the rule's secrets. Pure functions, no I/O.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/origin/http_client.h"

namespace originfs {

struct UrlAuthority {
  std::string scheme;            // lowercase
  std::string host;              // lowercase, IPv6 without brackets
  long port = 0;                 // the scheme's default when the URL names none
  std::string HostPort() const;  // "host:port"
  std::string Origin() const;    // "scheme://host:port": what trust is given to
};

// The scheme, host and port of an absolute http(s) URL, or nullopt.
std::optional<UrlAuthority> AuthorityOf(std::string_view url);

// location (absolute, or relative to base) as an absolute URL, or nullopt.
std::optional<std::string> ResolveLocation(std::string_view base, std::string_view location);

// "" when a redirect from `from` to `to` is allowed by policy, else why not
// (for the log line naming the target).
std::string RedirectRefusal(const RedirectPolicy& policy, std::string_view from,
                            std::string_view to);

// Whether url's scheme, host and port are among the policy's trusted ones
// (UrlAuthority::Origin): plain http to an https origin's host is not.
bool Trusted(const RedirectPolicy& policy, std::string_view url);

}  // namespace originfs
