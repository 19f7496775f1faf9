// Build-time generator of the documents that must say what `originfs --help`
// says: the man pages originfs(8) and originfs-rules(5), and the bash
// completion. One source each: the commands and -o options come from kUsage
// (the text --help prints), the rule keys from README.md's "Every rule key"
// table. tests/package/docs_sync.sh checks the results against the binary,
// the README and the parsers' own tables.
//
//   originfs_man_page man TEMPLATE README.md OUT
//   originfs_man_page completion TEMPLATE OUT
//
// A template's @NAME@ placeholders are replaced (see Substitutions()); an
// unknown placeholder or a source that cannot be parsed fails the build.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/fmt/fmt.h>

#include "fs/build_info.h"
#include "fs/daemon.h"

namespace originfs {
namespace {

// One "term  description" entry of kUsage: a command's synopsis or an option.
struct Entry {
  std::string term;
  std::string text;    // description, continuation lines joined by spaces
  bool prose = false;  // a line of running text between entries, not an entry
};

struct Usage {
  std::vector<Entry> commands;  // "originfs check RULES_FILE" ...
  std::vector<std::string> description;
  std::string options_heading;
  std::vector<Entry> options;  // "rules=FILE", "-f", ...
  std::vector<Entry> notes;    // "Signals", "Statistics"
};

std::string Trim(std::string_view s) {
  auto b = s.find_first_not_of(' ');
  if (b == std::string_view::npos) return "";
  auto e = s.find_last_not_of(' ');
  return std::string(s.substr(b, e - b + 1));
}

std::size_t Indent(std::string_view s) {
  auto b = s.find_first_not_of(' ');
  return b == std::string_view::npos ? s.size() : b;
}

std::vector<std::vector<std::string>> Blocks(std::string_view text) {
  std::vector<std::vector<std::string>> blocks(1);
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    if (Trim(line).empty()) {
      if (!blocks.back().empty()) blocks.emplace_back();
    } else {
      blocks.back().push_back(line);
    }
  }
  if (blocks.back().empty()) blocks.pop_back();
  return blocks;
}

void Append(std::string& text, std::string_view more) {
  if (!text.empty()) text += ' ';
  text += Trim(more);
}

// "  term   description": the term ends at the first run of two spaces.
Entry SplitEntry(std::string_view line) {
  std::string body = Trim(line);
  auto gap = body.find("  ");
  if (gap == std::string::npos) return {body, "", false};
  return {body.substr(0, gap), Trim(std::string_view(body).substr(gap)), false};
}

Usage ParseUsage(std::string_view text) {
  auto blocks = Blocks(text);
  if (blocks.size() < 4) throw std::runtime_error("kUsage: expected at least 4 blocks");
  Usage u;
  // Block 1: "usage: originfs ..." then "       originfs ..." lines; deeper
  // lines continue the description of the command above.
  constexpr std::size_t kCommandIndent = 7;  // strlen("usage: ")
  for (std::string line : blocks[0]) {
    if (line.starts_with("usage: ")) line.replace(0, kCommandIndent, kCommandIndent, ' ');
    if (Indent(line) == kCommandIndent && line.substr(kCommandIndent).starts_with("originfs")) {
      u.commands.push_back(SplitEntry(line));
    } else if (Indent(line) > kCommandIndent && !u.commands.empty()) {
      Append(u.commands.back().text, line);
    } else {
      throw std::runtime_error("kUsage: unexpected line in the commands: " + line);
    }
  }
  std::size_t b = 1;
  for (; b < blocks.size() && !blocks[b][0].starts_with("Options"); ++b) {
    std::string para;
    for (const auto& line : blocks[b]) Append(para, line);
    u.description.push_back(para);
  }
  if (b == blocks.size()) throw std::runtime_error("kUsage: no \"Options\" block");
  u.options_heading = blocks[b][0];
  for (std::size_t i = 1; i < blocks[b].size(); ++i) {
    const std::string& line = blocks[b][i];
    if (Indent(line) == 2) {
      Entry e = SplitEntry(line);
      if (e.text.empty()) {  // running text: "allow_other, ro, ... are passed to FUSE"
        if (!u.options.empty() && u.options.back().prose) {
          Append(u.options.back().text, line);
        } else {
          u.options.push_back({"", Trim(line), true});
        }
      } else {
        u.options.push_back(e);
      }
    } else if (Indent(line) > 2 && !u.options.empty() && !u.options.back().prose) {
      Append(u.options.back().text, line);
    } else {
      throw std::runtime_error("kUsage: unexpected line in the options: " + line);
    }
  }
  for (++b; b < blocks.size(); ++b) {
    for (const auto& line : blocks[b]) {
      auto colon = line.find(": ");
      if (colon == std::string::npos)
        throw std::runtime_error("kUsage: expected \"Word: text\": " + line);
      u.notes.push_back({line.substr(0, colon), Trim(line.substr(colon + 2)), false});
    }
  }
  if (u.commands.size() < 5 || u.options.size() < 10)
    throw std::runtime_error("kUsage: too few commands or options parsed");
  return u;
}

// --- roff ---------------------------------------------------------------

// Plain text to roff: backslashes and hyphens escaped, no line starting a
// request, "…" spelled out (groff's ASCII output has no glyph for it).
std::string Roff(std::string_view in) {
  std::string s(in);
  for (std::size_t p; (p = s.find("\u2026")) != std::string::npos;) s.replace(p, 3, "...");
  std::string out;
  for (char c : s) {
    if (c == '\\') {
      out += "\\e";
    } else if (c == '-') {
      out += "\\-";
    } else {
      out += c;
    }
  }
  if (out.starts_with('.') || out.starts_with('\'')) out.insert(0, "\\&");
  return out;
}

// One markdown table cell to roff: `code` and **bold** bold, *emphasis*
// italic, [text](link) as text, "\|" as "|".
std::string MarkdownToRoff(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    if (s[i] == '`') {
      auto end = s.find('`', i + 1);
      if (end == std::string_view::npos)
        throw std::runtime_error("README: unclosed ` in: " + std::string(s));
      std::string code(s.substr(i + 1, end - i - 1));
      for (std::size_t p; (p = code.find("\\|")) != std::string::npos;) code.replace(p, 2, "|");
      out += "\\fB" + Roff(code) + "\\fR";
      i = end + 1;
    } else if (s.substr(i).starts_with("**")) {
      auto end = s.find("**", i + 2);
      if (end == std::string_view::npos)
        throw std::runtime_error("README: unclosed ** in: " + std::string(s));
      out += "\\fB" + MarkdownToRoff(s.substr(i + 2, end - i - 2)) + "\\fR";
      i = end + 2;
    } else if (s[i] == '*' && i + 1 < s.size() && s[i + 1] != ' ' &&
               s.find('*', i + 1) != std::string_view::npos) {
      auto end = s.find('*', i + 1);
      out += "\\fI" + MarkdownToRoff(s.substr(i + 1, end - i - 1)) + "\\fR";
      i = end + 1;
    } else if (s[i] == '[' && s.find("](", i) != std::string_view::npos &&
               s.find("](", i) < s.find(']', i) + 1) {
      auto mid = s.find("](", i);
      auto end = s.find(')', mid);
      out += MarkdownToRoff(s.substr(i + 1, mid - i - 1));
      i = end == std::string_view::npos ? s.size() : end + 1;
    } else if (s.substr(i).starts_with("\\|")) {
      out += '|';
      i += 2;
    } else {
      out += Roff(s.substr(i, 1));
      ++i;
    }
  }
  if (out.starts_with('.') || out.starts_with('\'')) out.insert(0, "\\&");
  return out;
}

// The cells of "| a | b \| c | d |".
std::vector<std::string> Cells(std::string_view row) {
  std::vector<std::string> cells;
  std::string cell;
  bool in_code = false;
  for (std::size_t i = 1; i < row.size(); ++i) {
    if (row[i] == '`') in_code = !in_code;
    if (row[i] == '\\' && i + 1 < row.size() && row[i + 1] == '|') {
      cell += "\\|";
      ++i;
    } else if (row[i] == '|' && !in_code) {
      cells.push_back(Trim(cell));
      cell.clear();
    } else {
      cell += row[i];
    }
  }
  return cells;
}

// README.md's table under HEADING: rows of cells, header and rule skipped.
std::vector<std::vector<std::string>> ReadmeTable(const std::string& readme,
                                                  std::string_view heading) {
  std::istringstream in(readme);
  std::string line;
  while (std::getline(in, line) && line != heading) {
  }
  if (!in) throw std::runtime_error(fmt::format("README.md: no line \"{}\"", heading));
  std::vector<std::vector<std::string>> rows;
  bool in_table = false;
  while (std::getline(in, line)) {
    if (line.starts_with('|')) {
      in_table = true;
      if (line.starts_with("|---") || line.starts_with("| ---")) continue;
      rows.push_back(Cells(line));
    } else if (in_table) {
      break;
    }
  }
  if (rows.size() < 2)
    throw std::runtime_error(fmt::format("README.md: no table after \"{}\"", heading));
  rows.erase(rows.begin());  // the header row
  return rows;
}

std::string TaggedParagraphs(const std::vector<Entry>& entries) {
  std::string out;
  for (const Entry& e : entries) {
    if (e.prose) {
      out += ".PP\n" + Roff(e.text) + "\n";
    } else {
      out += ".TP\n\\fB" + Roff(e.term) + "\\fR\n" + Roff(e.text) + "\n";
    }
  }
  return out;
}

std::string RuleKeys(const std::string& readme) {
  std::string out;
  for (const auto& row : ReadmeTable(readme, "#### Every rule key")) {
    if (row.size() != 3)
      throw std::runtime_error("README.md: a rule-key row without 3 cells: " + row[0]);
    out += ".TP\n" + MarkdownToRoff(row[0]);
    if (!row[1].empty()) out += " (default: " + MarkdownToRoff(row[1]) + ")";
    out += "\n" + MarkdownToRoff(row[2]) + "\n";
  }
  return out;
}

// --- completion ----------------------------------------------------------

// "originfs verify [--list] MOUNTPOINT" -> "verify"; the mount form -> "".
std::string CommandWord(const Entry& c) {
  std::string_view rest = std::string_view(c.term).substr(std::string_view("originfs ").size());
  std::string word(rest.substr(0, rest.find(' ')));
  for (char ch : word) {
    if (ch < 'a' || ch > 'z') return "";
  }
  return word;
}

// Words of the options' terms as completions: "rules=FILE" -> "rules=",
// "io_uring[=BOOL]" -> "io_uring io_uring=", "uid=N, gid=N" -> "uid= gid=".
std::string OptionWords(const Usage& u, bool flags) {
  std::string out;
  for (const Entry& e : u.options) {
    if (e.prose) continue;
    std::istringstream terms(e.term);
    for (std::string t; std::getline(terms, t, ',');) {
      t = Trim(t);
      if (t.empty()) continue;
      if (t.starts_with('-') != flags) continue;
      std::string word;
      if (flags) {
        word = t;
      } else if (auto br = t.find("[="); br != std::string::npos) {
        word = t.substr(0, br) + " " + t.substr(0, br) + "=";
      } else if (auto eq = t.find('='); eq != std::string::npos) {
        word = t.substr(0, eq + 1);
      } else {
        word = t;
      }
      out += (out.empty() ? "" : " ") + word;
    }
  }
  return out;
}

// One bash case arm per command: its flags, from every synopsis line of it.
std::string CommandFlags(const Usage& u) {
  std::map<std::string, std::set<std::string>> flags;
  for (const Entry& c : u.commands) {
    std::string word = CommandWord(c);
    if (word.empty()) continue;
    flags[word];
    std::istringstream in(c.term);
    for (std::string t; in >> t;) {
      std::string f;
      for (char ch : t) {
        if (ch != '[' && ch != ']') f += ch;
      }
      if (f.starts_with('-')) flags[word].insert(f);
    }
  }
  std::string out;
  for (const auto& [word, set] : flags) {
    std::string list;
    for (const auto& f : set) list += (list.empty() ? "" : " ") + f;
    out += fmt::format("    {}) flags=\"{}\" ;;\n", word, list);
  }
  return out;
}

std::string Commands(const Usage& u) {
  std::set<std::string> words;
  for (const Entry& c : u.commands) {
    if (auto w = CommandWord(c); !w.empty()) words.insert(w);
  }
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

// --- main ------------------------------------------------------------------

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Fill(std::string text, const std::map<std::string, std::string>& values,
                 const std::string& name) {
  std::string out;
  for (std::size_t i = 0; i < text.size();) {
    auto at = text.find('@', i);
    if (at == std::string::npos) {
      out += text.substr(i);
      break;
    }
    auto end = text.find('@', at + 1);
    std::string key = end == std::string::npos ? "" : text.substr(at + 1, end - at - 1);
    bool placeholder =
        !key.empty() && key.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == std::string::npos;
    out += text.substr(i, at - i);
    if (!placeholder) {
      out += '@';
      i = at + 1;
      continue;
    }
    auto v = values.find(key);
    if (v == values.end()) throw std::runtime_error(fmt::format("{}: unknown @{}@", name, key));
    out += v->second;
    i = end + 1;
  }
  return out;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  Usage u = ParseUsage(kUsage);
  std::map<std::string, std::string> values{{"VERSION", ORIGINFS_VERSION}};
  std::string tmpl, out;
  if (args.size() == 4 && args[0] == "man") {
    std::string readme = ReadFile(args[2]);
    std::string synopsis;
    for (const Entry& c : u.commands) synopsis += "\\fB" + Roff(c.term) + "\\fR\n.br\n";
    std::vector<Entry> commands;
    for (const Entry& c : u.commands) {
      if (!c.text.empty()) commands.push_back(c);
    }
    std::string description;
    for (const auto& p : u.description) description += ".PP\n" + Roff(p) + "\n";
    values.insert({{"SYNOPSIS", synopsis},
                   {"DESCRIPTION", description},
                   {"COMMANDS", TaggedParagraphs(commands)},
                   {"OPTIONS_HEADING", Roff(u.options_heading)},
                   {"OPTIONS", TaggedParagraphs(u.options)},
                   {"NOTES", TaggedParagraphs(u.notes)},
                   {"RULE_KEYS", RuleKeys(readme)}});
    tmpl = args[1];
    out = args[3];
  } else if (args.size() == 3 && args[0] == "completion") {
    values.insert({{"COMMANDS", Commands(u)},
                   {"COMMAND_FLAGS", CommandFlags(u)},
                   {"MOUNT_OPTIONS", OptionWords(u, false)},
                   {"MOUNT_FLAGS", OptionWords(u, true)}});
    tmpl = args[1];
    out = args[2];
  } else {
    std::cerr << "usage: originfs_man_page man TEMPLATE README.md OUT\n"
                 "       originfs_man_page completion TEMPLATE OUT\n";
    return 2;
  }
  std::string text = Fill(ReadFile(tmpl), values, tmpl);
  std::ofstream o(out, std::ios::binary | std::ios::trunc);
  o << text;
  if (!o.flush()) throw std::runtime_error("cannot write " + out);
  return 0;
}

}  // namespace
}  // namespace originfs

int main(int argc, char** argv) {
  try {
    return originfs::Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "originfs_man_page: " << e.what() << "\n";
    return 1;
  }
}
