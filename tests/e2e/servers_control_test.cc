// originfs on servers: operating a running mount — reload (command and
// SIGHUP), statistics (xattrs, `originfs stats`, the Prometheus metrics
// file), `originfs warm`, `originfs check`, --help and --version.
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/support/servers_support.h"

namespace originfs::e2e {
namespace {

class ServersControlTest : public ServersTest {};

const std::string kPrefix = "user.originfs.";

std::string DuplicatePrefixToml(const std::string& url_a, const std::string& url_b) {
  return "[[rule]]\nprefix = \"a/\"\norigin = \"" + url_a +
         "\"\n\n[[rule]]\nprefix = \"a/\"\norigin = \"" + url_b + "\"\n";
}

// ---- reload ------------------------------------------------------------------

TEST_F(ServersControlTest, ReloadCommandAppliesNewPrefixAndRefusesBadFile) {
  testing::TestOrigin second;
  origin_.SetFile("/a/one.txt", "first origin, a/");
  second.SetFile("/b/two.txt", "second origin, b/two");
  second.SetFile("/b/three.txt", "second origin, b/three");
  DaemonOptions o;
  o.rules = {RuleSpec{"a/", origin_.url()}};
  o.negative_ttl = 0;  // so a name that was missing is asked again at once
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  ASSERT_EQ(ReadAll(M("a/one.txt")).data, "first origin, a/");
  EXPECT_EQ(ErrnoName(StatErr(M("b/two.txt"))), ErrnoName(ENOENT)) << "no rule covers b/ yet";
  EXPECT_EQ(second.TotalCount(), 0);

  // A good new file: the new prefix and origin are in force when the command returns.
  ASSERT_EQ(WriteAll(mount_->rules_path(),
                     RulesToml({RuleSpec{"a/", origin_.url()}, RuleSpec{"b/", second.url()}})),
            0);
  auto good = RunCommand({ORIGINFS_BINARY, "reload", mnt_}, 10s);
  EXPECT_EQ(good.exit_code, 0) << good.err;
  EXPECT_NE(good.out.find("2 rule(s)"), std::string::npos) << good.out;
  auto r = ReadAll(M("b/two.txt"));
  EXPECT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(r.data, "second origin, b/two");
  EXPECT_EQ(GetXattr(mnt_, kPrefix + "rules").value_or("?"), "2");
  EXPECT_EQ(pid_t{mount_->pid()} > 0 && kill(mount_->pid(), 0) == 0, true)
      << "no remount: the same daemon serves";

  // A bad file: refused with the reason; the rules in force stay.
  ASSERT_EQ(WriteAll(mount_->rules_path(), DuplicatePrefixToml(origin_.url(), second.url())), 0);
  auto bad = RunCommand({ORIGINFS_BINARY, "reload", mnt_}, 10s);
  EXPECT_NE(bad.exit_code, 0) << bad.out;
  EXPECT_NE(bad.err.find("duplicate prefix"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("rule #2"), std::string::npos) << bad.err;
  EXPECT_EQ(GetXattr(mnt_, kPrefix + "rules").value_or("?"), "2");
  r = ReadAll(M("b/three.txt"));
  EXPECT_EQ(r.err, 0) << "old rules lost after a refused reload: " << r.stage << ": "
                      << ErrnoName(r.err);
  EXPECT_EQ(r.data, "second origin, b/three");
  EXPECT_EQ(ReadAll(M("a/one.txt")).data, "first origin, a/");

  // An unparsable file is refused too.
  ASSERT_EQ(WriteAll(mount_->rules_path(), "[[rule]\nprefix = \n"), 0);
  auto garbage = RunCommand({ORIGINFS_BINARY, "reload", mnt_}, 10s);
  EXPECT_NE(garbage.exit_code, 0);
  EXPECT_FALSE(garbage.err.empty());
  EXPECT_EQ(GetXattr(mnt_, kPrefix + "rules").value_or("?"), "2");

  // reload of something that is not an originfs mount.
  auto notmnt = RunCommand({ORIGINFS_BINARY, "reload", plain_}, 10s);
  EXPECT_NE(notmnt.exit_code, 0);
  EXPECT_NE(notmnt.err.find("not an originfs mount"), std::string::npos) << notmnt.err;
  ASSERT_NO_FATAL_FAILURE(Unmount());  // before `second` goes away
}

TEST_F(ServersControlTest, SighupAppliesNewPrefixAndRefusesBadFile) {
  testing::TestOrigin second;
  origin_.SetFile("/a/one.txt", "first origin, a/");
  second.SetFile("/c/only-second.txt", "only the second origin has this");
  second.SetFile("/c/later.txt", "later");
  DaemonOptions o;
  o.rules = {RuleSpec{"a/", origin_.url()}};
  o.negative_ttl = 0;
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(ErrnoName(StatErr(M("c/only-second.txt"))), ErrnoName(ENOENT));

  ASSERT_EQ(WriteAll(mount_->rules_path(),
                     RulesToml({RuleSpec{"a/", origin_.url()}, RuleSpec{"c/", second.url()}})),
            0);
  ASSERT_EQ(kill(mount_->pid(), SIGHUP), 0);
  // The reload runs on the daemon's control thread: poll (bounded).
  EXPECT_TRUE(WaitUntil(
      [&] { return ReadAll(M("c/only-second.txt")).data == "only the second origin has this"; },
      5s))
      << "rules not reloaded within 5 s of SIGHUP";
  EXPECT_EQ(GetXattr(mnt_, kPrefix + "rules").value_or("?"), "2");
  EXPECT_EQ(GetXattr(mnt_, kPrefix + "last_reload").value_or("?"), "ok");
  EXPECT_EQ(kill(mount_->pid(), 0), 0) << "SIGHUP ended the daemon";
  EXPECT_TRUE(IsMounted(mnt_));

  ASSERT_EQ(WriteAll(mount_->rules_path(), DuplicatePrefixToml(origin_.url(), second.url())), 0);
  ASSERT_EQ(kill(mount_->pid(), SIGHUP), 0);
  EXPECT_TRUE(WaitUntil(
      [&] { return GetXattr(mnt_, kPrefix + "last_reload").value_or("").starts_with("error"); },
      5s))
      << "last_reload: " << GetXattr(mnt_, kPrefix + "last_reload").value_or("?");
  auto last = GetXattr(mnt_, kPrefix + "last_reload").value_or("");
  EXPECT_NE(last.find("duplicate prefix"), std::string::npos) << last;
  EXPECT_TRUE(
      WaitUntil([&] { return mount_->Log().find("duplicate prefix") != std::string::npos; }, 5s))
      << "the refused reload is not logged with its reason";
  EXPECT_EQ(kill(mount_->pid(), 0), 0) << "a bad reload ended the daemon";
  EXPECT_EQ(GetXattr(mnt_, kPrefix + "rules").value_or("?"), "2");
  auto r = ReadAll(M("c/later.txt"));
  EXPECT_EQ(r.err, 0) << "old rules lost after a refused reload: " << r.stage << ": "
                      << ErrnoName(r.err);
  EXPECT_EQ(r.data, "later");
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

// ---- statistics -----------------------------------------------------------------

std::time_t ParseUtc(const std::string& s) {
  std::tm tm{};
  if (!strptime(s.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm)) return -1;
  return timegm(&tm);
}

TEST_F(ServersControlTest, StatsXattrsCountFetchesAndErrors) {
  const std::string a = PatternBytes(100, 1), b = PatternBytes(2000, 2), c = PatternBytes(12345, 3);
  origin_.SetFile("/a.txt", a);
  origin_.SetFile("/b.bin", b);
  origin_.SetFile("/c.bin", c);
  testing::Behavior broken;
  broken.status = 500;
  broken.body = "internal error";
  origin_.Set("/broken.txt", broken);
  ASSERT_EQ(WriteAll(B("local.txt"), "in the bucket"), 0);
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=0"};
  auto mounted_at = std::chrono::steady_clock::now();
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  EXPECT_TRUE(ReadAll(M("a.txt")).data == a);
  EXPECT_TRUE(ReadAll(M("b.bin")).data == b);
  EXPECT_TRUE(ReadAll(M("c.bin")).data == c);
  EXPECT_TRUE(ReadAll(M("a.txt")).data == a);  // again: local now
  for (const auto* k : {"a.txt", "b.bin", "c.bin"}) ASSERT_TRUE(EventuallyExists(B(k))) << k;
  EXPECT_EQ(ErrnoName(StatErr(M("missing.txt"))), ErrnoName(ENOENT));
  EXPECT_EQ(ErrnoName(StatErr(M("broken.txt"))), ErrnoName(EIO));
  EXPECT_EQ(StatErr(M("local.txt")), 0);
  ASSERT_TRUE(
      WaitUntil([&] { return GetXattr(mnt_, kPrefix + "inflight").value_or("") == "0"; }, 5s));

  auto g =
      RunCommand({"getfattr", "--absolute-names", "-d", "-m", "^user\\.originfs\\.", mnt_}, 10s);
  ASSERT_EQ(g.exit_code, 0) << g.err;
  auto attrs = ParseGetfattr(g.out);
  for (const auto* name : {"hits", "misses", "fetches", "fetched_bytes", "not_found",
                           "origin_errors", "inflight", "uptime", "rules"}) {
    ASSERT_TRUE(attrs.contains(kPrefix + name)) << name << " missing from:\n" << g.out;
    EXPECT_TRUE(std::regex_match(attrs[kPrefix + name], std::regex("[0-9]+")))
        << name << "=" << attrs[kPrefix + name];
  }
  auto num = [&](const char* name) { return std::stoull(attrs[kPrefix + name]); };
  EXPECT_EQ(num("fetches"), 3u) << g.out;
  EXPECT_EQ(num("fetched_bytes"), a.size() + b.size() + c.size()) << g.out;
  EXPECT_EQ(num("not_found"), 1u) << g.out;
  EXPECT_EQ(num("origin_errors"), 1u) << g.out;
  EXPECT_EQ(num("inflight"), 0u) << g.out;
  EXPECT_EQ(num("rules"), 1u) << g.out;
  EXPECT_GE(num("hits"), 1u) << g.out;    // local.txt
  EXPECT_GE(num("misses"), 5u) << g.out;  // a, b, c, missing, broken
  auto elapsed = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                  mounted_at);
  EXPECT_LE(num("uptime"), static_cast<unsigned long long>(elapsed.count()) + 1) << g.out;
  EXPECT_EQ(origin_.GetCount("/a.txt"), 1);

  // Per file: where it came from and when.
  for (const auto* k : {"a.txt", "b.bin", "c.bin"}) {
    int err = 0;
    EXPECT_EQ(GetXattr(M(k), kPrefix + "origin", &err).value_or(ErrnoName(err)),
              origin_.url() + "/" + k);
    // (Right after a read-through fetch the attribute may lag until the
    // kernel's entry cache expires: see FetchedAtShownAsSoonAsTheFetchCompleted.)
    std::optional<std::string> at;
    WaitUntil([&] { return (at = GetXattr(M(k), kPrefix + "fetched_at", &err)).has_value(); }, 3s);
    ASSERT_TRUE(at) << k << ": " << ErrnoName(err);
    std::time_t t = ParseUtc(*at);
    EXPECT_LE(std::abs(std::time(nullptr) - t), 120) << k << " fetched_at=" << *at;
    // Read by name only: listed, cp -a and mv would copy them and fail (read-only).
    for (const auto& n : ListXattr(M(k))) EXPECT_FALSE(n.starts_with(kPrefix)) << k << ": " << n;
  }
  auto per_file =
      RunCommand({"getfattr", "--absolute-names", "-n", kPrefix + "origin", M("b.bin")}, 10s);
  EXPECT_EQ(ParseGetfattr(per_file.out)[kPrefix + "origin"], origin_.url() + "/b.bin")
      << per_file.out;
  // Copies that keep attributes copy the file's own ones, none of originfs's.
  auto cp = RunCommand({"cp", "-a", M("b.bin"), M("b-copy.bin")}, 20s);
  EXPECT_EQ(cp.exit_code, 0) << cp.err;
  EXPECT_EQ(cp.err, "") << "cp -a complained";

  // Files that did not come from an origin have neither.
  ASSERT_EQ(WriteAll(M("written.txt"), "written through the mount"), 0);
  for (const auto* k : {"written.txt", "local.txt"}) {
    int err = 0;
    EXPECT_FALSE(GetXattr(M(k), kPrefix + "origin", &err)) << k;
    EXPECT_EQ(ErrnoName(err), ErrnoName(ENODATA)) << k;
    EXPECT_FALSE(GetXattr(M(k), kPrefix + "fetched_at", &err)) << k;
    for (const auto& n : ListXattr(M(k))) EXPECT_FALSE(n.starts_with(kPrefix)) << k << ": " << n;
  }

  // originfs stats prints the same counters.
  auto s = RunCommand({ORIGINFS_BINARY, "stats", mnt_}, 10s);
  EXPECT_EQ(s.exit_code, 0) << s.err;
  for (const auto* name : {"hits", "misses", "fetches", "fetched_bytes", "not_found",
                           "origin_errors", "inflight", "uptime", "rules"}) {
    EXPECT_TRUE(std::regex_search(s.out, std::regex(std::string("\\n\\s*") + name + "\\s+[0-9]+")))
        << name << " not in:\n"
        << s.out;
  }
  EXPECT_TRUE(std::regex_search(s.out, std::regex("\\n\\s*fetches\\s+3\\n"))) << s.out;
  EXPECT_TRUE(std::regex_search(s.out, std::regex("\\n\\s*fetched_bytes\\s+" +
                                                  std::to_string(a.size() + b.size() + c.size()))))
      << s.out;
  EXPECT_TRUE(std::regex_search(s.out, std::regex("\\n\\s*origin_errors\\s+1\\n"))) << s.out;
  auto s_bad = RunCommand({ORIGINFS_BINARY, "stats", plain_}, 10s);
  EXPECT_NE(s_bad.exit_code, 0);
}

// A fetch that completed makes a fetched file: its fetched_at must show
// without waiting for the kernel to forget the name or to ask for its
// attributes again (servers mount with long entry_timeout/attr_timeout).
// A stat is enough to start the fetch ("a stat of an origin file starts
// mirroring it").
TEST_F(ServersControlTest, FetchedAtShownAsSoonAsTheFetchCompleted) {
  const std::string body = PatternBytes(64 * 1024, 6);
  origin_.SetFile("/f.bin", body);
  DaemonOptions o = Defaults();
  o.extra_opts = {"entry_timeout=30", "attr_timeout=30"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  struct stat st {};
  ASSERT_EQ(StatErr(M("f.bin"), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(body.size()));
  ASSERT_TRUE(EventuallyExists(B("f.bin"))) << "the fetch started by stat did not land";
  ASSERT_TRUE(
      WaitUntil([&] { return GetXattr(mnt_, kPrefix + "inflight").value_or("") == "0"; }, 5s));
  ASSERT_TRUE(
      WaitUntil([&] { return GetXattr(mnt_, kPrefix + "fetches").value_or("") == "1"; }, 5s));
  EXPECT_TRUE(ReadFile(B("f.bin")) == body);
  int err = 0;
  std::optional<std::string> at;
  bool shown = WaitUntil(
      [&] { return (at = GetXattr(M("f.bin"), kPrefix + "fetched_at", &err)).has_value(); }, 3s);
  EXPECT_TRUE(shown) << "user.originfs.fetched_at of a fetched file: " << ErrnoName(err);
  EXPECT_FALSE(HasWord(ListXattr(M("f.bin")), kPrefix + "fetched_at"))
      << "read by name only: " << ::testing::PrintToString(ListXattr(M("f.bin")));
  EXPECT_EQ(GetXattr(M("f.bin"), kPrefix + "origin").value_or("?"), origin_.url() + "/f.bin");
  // And `originfs warm` counts it as present, not as fetched.
  std::string keys = root_ + "/keys.txt";
  ASSERT_EQ(WriteAll(keys, "f.bin\n"), 0);
  auto w = RunCommand({ORIGINFS_BINARY, "warm", mnt_, keys}, 30s);
  EXPECT_EQ(w.exit_code, 0) << w.err;
  EXPECT_NE(w.out.find("fetched 0, already present 1"), std::string::npos) << w.out;
  EXPECT_EQ(origin_.GetCount("/f.bin"), 1);
}

// Parses Prometheus text; fails on anything that is not HELP/TYPE/sample.
::testing::AssertionResult ParsePrometheus(const std::string& text,
                                           std::map<std::string, double>* samples) {
  std::set<std::string> help, type;
  std::regex help_re("# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+");
  std::regex type_re("# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|untyped|summary|histogram)");
  // A sample, with labels or without: name{a="x",b="y \\" z"} value.
  std::regex sample_re(
      "([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\]|\\\\.)*\""
      "(?:,[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\]|\\\\.)*\")*\\})? (-?[0-9.eE+]+|NaN|[+-]Inf)");
  if (text.empty() || text.back() != '\n')
    return ::testing::AssertionFailure() << "not newline-terminated";
  std::istringstream in(text);
  std::smatch m;
  for (std::string line; std::getline(in, line);) {
    if (std::regex_match(line, m, help_re)) {
      help.insert(m[1]);
    } else if (std::regex_match(line, m, type_re)) {
      type.insert(m[1]);
    } else if (std::regex_match(line, m, sample_re)) {
      if (!help.contains(m[1]) || !type.contains(m[1]))
        return ::testing::AssertionFailure() << "sample without # HELP / # TYPE: " << line;
      (*samples)[std::string(m[1]) + std::string(m[2])] = std::stod(m[3]);
    } else {
      return ::testing::AssertionFailure() << "not Prometheus text: \"" << line << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

TEST_F(ServersControlTest, MetricsFileIsPrometheusTextAndFollowsFetches) {
  const std::string one = PatternBytes(1000, 4), two = PatternBytes(3000, 5);
  origin_.SetFile("/one.bin", one);
  origin_.SetFile("/two.bin", two);
  std::string dir = Dir("metrics");
  std::string path = dir + "/originfs.prom";
  DaemonOptions o = Defaults();
  o.extra_opts = {"metrics_file=" + path, "metrics_interval=0.2"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  ASSERT_TRUE(WaitUntil([&] { return Exists(path); }, 3s)) << path << " did not appear";
  std::map<std::string, double> before;
  ASSERT_TRUE(WaitUntil([&] { return !ReadFile(path).empty(); }, 3s));
  std::string text = ReadFile(path);
  ASSERT_TRUE(ParsePrometheus(text, &before)) << text;
  for (const auto* m :
       {"originfs_fetches_total", "originfs_fetched_bytes_total", "originfs_not_found_total",
        "originfs_origin_errors_total", "originfs_inflight"})
    EXPECT_TRUE(before.contains(m)) << m << " not in:\n" << text;
  EXPECT_NE(text.find("# TYPE originfs_fetches_total counter"), std::string::npos) << text;
  EXPECT_EQ(before["originfs_fetches_total"], 0) << text;

  EXPECT_TRUE(ReadAll(M("one.bin")).data == one);
  EXPECT_TRUE(ReadAll(M("two.bin")).data == two);
  std::map<std::string, double> after;
  bool updated = WaitUntil(
      [&] {
        after.clear();
        return ParsePrometheus(ReadFile(path), &after) && after["originfs_fetches_total"] == 2 &&
               after["originfs_fetched_bytes_total"] == one.size() + two.size();
      },
      3s);
  EXPECT_TRUE(updated) << "metrics file not updated within 3 s:\n" << ReadFile(path);
  EXPECT_TRUE(ParsePrometheus(ReadFile(path), &after));

  // The last values are written at unmount too.
  ASSERT_NO_FATAL_FAILURE(Unmount());
  std::map<std::string, double> final_values;
  ASSERT_TRUE(ParsePrometheus(ReadFile(path), &final_values)) << ReadFile(path);
  EXPECT_EQ(final_values["originfs_fetches_total"], 2);
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"originfs.prom"})
      << "temporary files left beside the metrics file";
}

// ---- warm ---------------------------------------------------------------------

TEST_F(ServersControlTest, WarmPullsKeysAndReportsFailures) {
  origin_.SetNginxDirectories(true);
  std::map<std::string, std::string> fetchable;
  for (int i = 1; i <= 6; ++i)
    fetchable["w" + std::to_string(i) + ".txt"] = PatternBytes(500 * i + 7, 30 + i);
  fetchable["deep/dir/w7.bin"] = PatternBytes(200000, 37);
  for (const auto& [k, v] : fetchable) origin_.SetFile("/" + k, v);
  testing::Behavior broken;
  broken.status = 500;
  broken.body = "boom";
  origin_.Set("/broken.txt", broken);
  ASSERT_EQ(WriteAll(B("present1.txt"), "already here 1"), 0);
  ASSERT_EQ(WriteAll(B("present2.txt"), "already here 2"), 0);
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  std::string keys = root_ + "/keys.txt";
  ASSERT_EQ(WriteAll(keys,
                     "# keys to warm\n"
                     "present1.txt\n"
                     "w1.txt\nw2.txt\nw3.txt\n\n"
                     "nf1.txt\n"
                     "present2.txt\n"
                     "w4.txt\nw5.txt\n/w6.txt\n"
                     "broken.txt\n"
                     "deep/dir/w7.bin\n"
                     "nf2.txt\n"),
            0);
  auto r = RunCommand({ORIGINFS_BINARY, "warm", mnt_, "-j", "4", keys}, 30s);
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 6) << "2 (not found) | 4 (failed) expected:\n" << r.out << r.err;
  EXPECT_NE(r.out.find("12 keys"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fetched 7, already present 2, not found 2, failed 1"), std::string::npos)
      << r.out;
  EXPECT_NE(r.err.find("broken.txt"), std::string::npos) << r.err;
  for (const auto& out : {r.out, r.err}) {
    EXPECT_EQ(out.find('\r'), std::string::npos) << "carriage return in non-tty output";
    EXPECT_EQ(out.find('\033'), std::string::npos) << "escape sequence in non-tty output";
  }
  EXPECT_EQ(Lines(r.out).size(), 1u) << r.out;
  for (const auto& [k, v] : fetchable) {
    ASSERT_TRUE(EventuallyExists(B(k))) << k << " not in the bucket after warm";
    EXPECT_TRUE(ReadFile(B(k)) == v) << k;
    EXPECT_EQ(origin_.GetCount("/" + k), 1) << k;
  }
  EXPECT_FALSE(Exists(B("broken.txt")));
  EXPECT_FALSE(Exists(B("nf1.txt")));
  EXPECT_EQ(origin_.Count("/present1.txt"), 0);

  // From stdin, with no failing key: 2, as one key is not found at any origin.
  std::map<std::string, std::string> more;
  for (int i = 1; i <= 4; ++i)
    more["s/v" + std::to_string(i) + ".txt"] = PatternBytes(3000 + i, 50 + i);
  for (const auto& [k, v] : more) origin_.SetFile("/" + k, v);
  std::string stdin_keys = root_ + "/stdin-keys.txt";
  ASSERT_EQ(
      WriteAll(stdin_keys,
               "s/v1.txt\ns/v2.txt\npresent1.txt\npresent2.txt\ns/v3.txt\nnf1.txt\ns/v4.txt\n"),
      0);
  RunOptions ro;
  ro.stdin_path = stdin_keys;
  auto s = RunCommand({ORIGINFS_BINARY, "warm", mnt_, "-j", "4"}, 30s, ro);
  ASSERT_FALSE(s.timed_out);
  EXPECT_EQ(s.exit_code, 2) << s.out << s.err;
  EXPECT_NE(s.out.find("7 keys"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("fetched 4, already present 2, not found 1, failed 0"), std::string::npos)
      << s.out;
  for (const auto& out : {s.out, s.err}) {
    EXPECT_EQ(out.find('\r'), std::string::npos);
    EXPECT_EQ(out.find('\033'), std::string::npos);
  }
  for (const auto& [k, v] : more) {
    ASSERT_TRUE(EventuallyExists(B(k))) << k;
    EXPECT_TRUE(ReadFile(B(k)) == v) << k;
  }
  // "-" also means stdin.
  ASSERT_EQ(WriteAll(stdin_keys, "present1.txt\nnf2.txt\npresent2.txt\n"), 0);
  auto dash = RunCommand({ORIGINFS_BINARY, "warm", mnt_, "-j", "2", "-"}, 30s, ro);
  EXPECT_EQ(dash.exit_code, 2) << dash.out << dash.err;
  EXPECT_NE(dash.out.find("3 keys"), std::string::npos) << dash.out;
  EXPECT_NE(dash.out.find("fetched 0, already present 2, not found 1, failed 0"), std::string::npos)
      << dash.out;
}

// Many small objects, many workers: the total is every fetched object's
// size (some land before a worker looks at them), the same as the daemon's
// fetched_bytes counter grew by.
TEST_F(ServersControlTest, WarmTotalIsTheBytesOfEveryFetchedObject) {
  constexpr int kRounds = 4, kKeys = 40, kSize = 16;
  ASSERT_NO_FATAL_FAILURE(Mount());
  for (int round = 0; round < kRounds; ++round) {
    std::string keys;
    for (int i = 0; i < kKeys; ++i) {
      std::string k = "r" + std::to_string(round) + "-f" + std::to_string(i) + ".bin";
      origin_.SetFile("/" + k, PatternBytes(kSize, 100 * round + i));
      keys += k + "\n";
    }
    std::string keys_file = root_ + "/keys" + std::to_string(round) + ".txt";
    ASSERT_EQ(WriteAll(keys_file, keys), 0);
    auto before = GetXattr(mnt_, kPrefix + "fetched_bytes");
    ASSERT_TRUE(before);
    auto r = RunCommand({ORIGINFS_BINARY, "warm", mnt_, "-j", "16", keys_file}, 30s);
    ASSERT_FALSE(r.timed_out);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    std::string total = std::to_string(kKeys * kSize) + " B)";
    EXPECT_NE(r.out.find("fetched " + std::to_string(kKeys) +
                         ", already present 0, not found 0, failed 0 (" + total),
              std::string::npos)
        << "round " << round << ": " << r.out;
    auto after = GetXattr(mnt_, kPrefix + "fetched_bytes");
    ASSERT_TRUE(after);
    EXPECT_EQ(std::stoull(*after) - std::stoull(*before), uint64_t{kKeys * kSize}) << r.out;
  }
  // Warmed again: all present, nothing counted.
  auto again = RunCommand({ORIGINFS_BINARY, "warm", mnt_, "-j", "16", root_ + "/keys0.txt"}, 30s);
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("fetched 0, already present " + std::to_string(kKeys) +
                           ", not found 0, failed 0 (0 B)"),
            std::string::npos)
      << again.out;
}

// 0: every key is in the bucket; 2: some not found at any origin; 4: some
// failed; 6: both. The progress lines and summary are there in every case.
TEST_F(ServersControlTest, WarmExitCodeSaysWhatWasMissed) {
  origin_.SetFile("/ok.txt", "fine");
  testing::Behavior broken;
  broken.status = 503;
  broken.body = "down";
  origin_.Set("/broken.txt", broken);
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  auto warm = [&](const std::string& name, const std::string& keys) {
    std::string file = root_ + "/" + name + ".txt";
    EXPECT_EQ(WriteAll(file, keys), 0);
    return RunCommand({ORIGINFS_BINARY, "warm", mnt_, file}, 30s);
  };
  auto ok = warm("ok", "ok.txt\n");
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("fetched 1, already present 0, not found 0, failed 0"), std::string::npos)
      << ok.out;
  auto nf = warm("nf", "ok.txt\nmissing.txt\n");
  EXPECT_EQ(nf.exit_code, 2) << nf.out << nf.err;
  EXPECT_NE(nf.out.find("already present 1, not found 1, failed 0"), std::string::npos) << nf.out;
  auto failed = warm("failed", "ok.txt\nbroken.txt\n");
  EXPECT_EQ(failed.exit_code, 4) << failed.out << failed.err;
  EXPECT_NE(failed.out.find("not found 0, failed 1"), std::string::npos) << failed.out;
  EXPECT_NE(failed.err.find("failed: broken.txt"), std::string::npos) << failed.err;
  auto both = warm("both", "missing.txt\nbroken.txt\nok.txt\n");
  EXPECT_EQ(both.exit_code, 6) << both.out << both.err;
  EXPECT_NE(both.out.find("not found 1, failed 1"), std::string::npos) << both.out;
  for (const auto* r : {&ok, &nf, &failed, &both}) {
    EXPECT_FALSE(r->timed_out);
    EXPECT_EQ(Lines(r->out).size(), 1u) << "one summary line:\n" << r->out;
  }
  // A key that failed but is in the bucket by the end (put there while the
  // origin held its answer) is no reason to fail.
  testing::Behavior slow = broken;
  slow.delay_ms = 3000;
  origin_.Set("/late.txt", slow);
  std::string file = root_ + "/late-keys.txt";
  ASSERT_EQ(WriteAll(file, "late.txt\n"), 0);
  pid_t pid = SpawnLogged({ORIGINFS_BINARY, "warm", mnt_, file}, root_ + "/late.log");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(EventuallyRequested(origin_, "/late.txt"));
  ASSERT_EQ(WriteAll(B("late.txt"), "uploaded meanwhile"), 0);
  int status = 0;
  ASSERT_TRUE(WaitPid(pid, 30s, &status));
  std::string log = ReadFile(root_ + "/late.log");
  EXPECT_NE(log.find("failed 1"), std::string::npos) << log;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << "\n" << log;
}

// ---- check, --help, --version ------------------------------------------------------

TEST_F(ServersControlTest, CheckPrintsEveryRuleOrNamesTheProblem) {
  std::string good = root_ + "/good.toml";
  ASSERT_EQ(
      WriteAll(
          good,
          "[[rule]]\nprefix = \"img/\"\norigin = \"http://img.example.com\"\ndirs = \"virtual\"\n\n"
          "[[rule]]\nprefix = \"docs/2024/\"\norigin = "
          "\"https://docs.example.com/base\"\nwriteback = false\n\n"
          "[[rule]]\nprefix = \"\"\norigin = \"" +
              origin_.url() + "\"\n"),
      0);
  auto r = RunCommand({ORIGINFS_BINARY, "check", good}, 10s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("3 rule(s)"), std::string::npos) << r.out;
  for (const auto& s :
       {std::string("rule #1"), std::string("rule #2"), std::string("rule #3"),
        std::string("\"img/\""), std::string("http://img.example.com"), std::string("virtual"),
        std::string("\"docs/2024/\""), std::string("https://docs.example.com/base"),
        std::string("writeback=false"), std::string("\"\""), origin_.url()})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " not in:\n" << r.out;
  EXPECT_EQ(origin_.TotalCount(), 0) << "check contacted an origin";

  std::string bad = root_ + "/bad.toml";
  ASSERT_EQ(WriteAll(bad,
                     "[[rule]]\nprefix = \"\"\norigin = \"http://a.example.com\"\n\n"
                     "[[rule]]\nprefix = \"x/\"\norigin = \"gopher://b.example.com\"\n"),
            0);
  auto b = RunCommand({ORIGINFS_BINARY, "check", bad}, 10s);
  EXPECT_NE(b.exit_code, 0) << b.out;
  EXPECT_NE(b.err.find("rule #2"), std::string::npos) << b.err;
  EXPECT_NE(b.err.find("gopher"), std::string::npos) << b.err;
  EXPECT_EQ(Lines(b.err).size(), 1u) << b.err;

  ASSERT_EQ(WriteAll(bad, DuplicatePrefixToml("http://a.example.com", "http://b.example.com")), 0);
  b = RunCommand({ORIGINFS_BINARY, "check", bad}, 10s);
  EXPECT_NE(b.exit_code, 0);
  EXPECT_NE(b.err.find("duplicate prefix"), std::string::npos) << b.err;

  auto missing = RunCommand({ORIGINFS_BINARY, "check", root_ + "/does-not-exist.toml"}, 10s);
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_FALSE(missing.err.empty());
}

// Option names in README's options table, e.g. "rules", "entry_timeout", "fsync".
std::vector<std::string> ReadmeOptionNames() {
  std::vector<std::string> names;
  std::ifstream in(std::string(ORIGINFS_SOURCE_DIR) + "/README.md");
  bool in_options = false;
  std::regex cell_re("`([a-z_]+)(=|\\[=)[^`]*`");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("### Options"))
      in_options = true;
    else if (line.starts_with("#"))
      in_options = false;
    if (!in_options || !line.starts_with("| `")) continue;
    std::string first_cell = line.substr(1, line.find('|', 1) - 1);
    for (std::sregex_iterator it(first_cell.begin(), first_cell.end(), cell_re), end; it != end;
         ++it)
      names.push_back((*it)[1]);
  }
  return names;
}

TEST_F(ServersControlTest, HelpMentionsEveryReadmeOptionAndVersionWorks) {
  auto names = ReadmeOptionNames();
  ASSERT_GE(names.size(), 10u) << "could not read the options table of README.md";
  auto h = RunCommand({ORIGINFS_BINARY, "--help"}, 10s);
  EXPECT_EQ(h.exit_code, 0);
  for (const auto& n : names) {
    EXPECT_TRUE(h.out.find(n + "=") != std::string::npos ||
                h.out.find(n + "[=") != std::string::npos)
        << "--help does not mention -o " << n << "=";
  }
  for (const auto* extra : {"metrics_file=", "metrics_interval=", "uid=", "gid=", "umask=", "check",
                            "reload", "stats", "warm", "SIGHUP", "--version"})
    EXPECT_NE(h.out.find(extra), std::string::npos) << extra;

  auto v = RunCommand({ORIGINFS_BINARY, "--version"}, 10s);
  EXPECT_EQ(v.exit_code, 0);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(v.out, m, std::regex("^originfs ([0-9]+\\.[0-9]+\\.[0-9]+)\n")))
      << v.out;
  // The same version as the CMake project.
  std::string cmake = ReadFile(std::string(ORIGINFS_SOURCE_DIR) + "/CMakeLists.txt");
  std::smatch pm;
  ASSERT_TRUE(std::regex_search(cmake, pm, std::regex("project\\(originfs VERSION ([0-9.]+)")));
  EXPECT_EQ(m[1].str(), pm[1].str());
}

}  // namespace
}  // namespace originfs::e2e
