// Directory listings an origin serves: the index pages that web servers
// generate for a directory URL (nginx autoindex in HTML and JSON, Apache
// mod_autoindex, lighttpd mod_dirlisting, python's http.server), parsed into
// the names of the directory's entries. Pure functions, no I/O.
//
// A page is recognised by what it says, not by which server sent it: an HTML
// page whose title (or first heading) reads "Index of ..." or "Directory
// listing for ...", or a JSON array of {"name", "type"} objects. Links are
// kept only when they name one entry of this very directory: relative, one
// path segment (a trailing '/' marks a directory), no query or fragment, not
// "." or ".."; anything else (parent links, sort links "?C=M;O=A", absolute
// URLs, other hosts, deeper paths) is ignored. Names are percent-decoded and
// HTML entities in the href resolved.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace originfs {

struct ListedEntry {
  std::string name;  // one path segment, decoded
  bool is_dir = false;
  std::optional<uint64_t> size;  // exact size, where the listing gives one (nginx JSON)
  std::optional<int64_t> mtime;  // seconds since the epoch, where given exactly
  // Not a directory as far as the listing says, but it may be one (an index
  // page that marks no directory with '/'): readdir says DT_UNKNOWN.
  bool type_unknown = false;
  bool operator==(const ListedEntry&) const = default;
};

// Digits only, as uint64_t ("" is 0); nullopt on overflow or anything else.
std::optional<uint64_t> ParseDigits(std::string_view s);

// Appends the UTF-8 encoding of code point cp (at most U+10FFFF).
void AppendUtf8(std::string& out, uint32_t cp);

// The text of XML character data: the five named entities and numeric
// references resolved; nullopt for a malformed reference.
std::optional<std::string> XmlText(std::string_view s);

// A name that can be one entry of a directory on Linux: not empty, "." or
// "..", at most 255 bytes, no '/' or NUL.
bool UsableName(std::string_view n);

// The entries of an index page, sorted by name, or nullopt when body is not
// an index page (an ordinary page, an error page, an unparseable document).
std::optional<std::vector<ListedEntry>> ParseIndexPage(std::string_view body,
                                                       std::string_view content_type);

// A listing as bytes (kept in the index) and back; nullopt for bytes that
// are not one (a corrupt or foreign record: listed again).
std::string EncodeListing(const std::vector<ListedEntry>& entries);
std::optional<std::vector<ListedEntry>> DecodeListing(std::string_view bytes);

// A manifest of the origin's files, one key per line with optional
// tab-separated size and mtime (what `find DIR -type f -printf
// '%P\t%s\t%T@\n'` prints), as each directory's entries: directory key ("" for
// the root) -> entries sorted by name; every key's parent directories are
// entries too. Blank lines and lines starting with '#' are skipped; a line
// whose key has an empty, "." or ".." segment, or whose size or mtime is not a
// number, is an error naming the line (*bad_line, 1-based).
using ManifestTree = std::map<std::string, std::vector<ListedEntry>>;
std::optional<ManifestTree> ParseManifest(std::string_view text, std::size_t* bad_line);

}  // namespace originfs
