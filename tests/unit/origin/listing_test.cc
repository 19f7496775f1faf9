// Index pages saved from real servers (tests/unit/data/listings, made by
// serving one directory of awkward names with each) and hostile variants.
#include "core/origin/listing.h"

#include <random>

#include <gtest/gtest.h>

#include "tests/unit/origin/saved_pages.h"

namespace originfs {
namespace {

std::string Page(const std::string& name) { return testing::SavedPage(name); }

std::vector<std::string> Names(const std::vector<ListedEntry>& v) {
  return testing::ListedNames(v);
}

const std::vector<std::string> kExpected = {"100%.txt",
                                            std::string(200, 'L') + ".txt",
                                            "a b.txt",
                                            "hash#.txt",
                                            "plain.txt",
                                            "q?.txt",
                                            "sub/",
                                            "sub dir/",
                                            "\xc3\xbcn\xc3\xaf.txt"};

class SavedPages : public ::testing::TestWithParam<const char*> {};

TEST_P(SavedPages, ListsExactlyTheDirectorysNames) {
  std::string body = Page(GetParam());
  ASSERT_FALSE(body.empty()) << "missing test page " << GetParam();
  auto r = ParseIndexPage(
      body, std::string(GetParam()).ends_with(".json") ? "application/json" : "text/html");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(Names(*r), kExpected);
}

INSTANTIATE_TEST_SUITE_P(Servers, SavedPages,
                         ::testing::Values("nginx.html", "nginx.json", "apache.html",
                                           "lighttpd.html", "python.html", "caddy.html",
                                           "caddy.json", "rclone.html"));

TEST(Listing, TypesAreKnownWhereThePageMarksDirectories) {
  // Every saved server marks directories with '/': the others are files.
  for (const char* page : {"nginx.html", "apache.html", "lighttpd.html", "python.html"}) {
    auto r = ParseIndexPage(Page(page), "text/html");
    ASSERT_TRUE(r.has_value()) << page;
    for (const auto& e : *r) EXPECT_FALSE(e.type_unknown) << page << ": " << e.name;
  }
  // A page that links no name with '/' may link directories without it.
  auto r = ParseIndexPage(
      "<html><title>Index of /d/</title><a href=\"big\">big</a> <a href=\"f.txt\">f</a>",
      "text/html");
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_TRUE((*r)[0].type_unknown && !(*r)[0].is_dir);
  EXPECT_TRUE((*r)[1].type_unknown);
  auto back = DecodeListing(EncodeListing(*r));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, *r) << "kept in the index as it is";
}

TEST(Listing, NginxJsonGivesExactSizesAndTimes) {
  auto r = ParseIndexPage(
      R"([{ "name":"f.bin", "type":"file", "mtime":"Tue, 01 Dec 2026 22:12:58 GMT", "size":12345 },
          { "name":"d", "type":"directory", "mtime":"Tue, 01 Dec 2026 22:12:58 GMT" },
          { "name":"odd\"\u00fc\ud83d\ude00", "type":"file", "size":1, "extra":[1,{"x":null}] },
          { "name":"link", "type":"other" }])",
      "application/json");
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].name, "d");
  EXPECT_TRUE((*r)[0].is_dir);
  EXPECT_EQ((*r)[1].name, "f.bin");
  EXPECT_EQ((*r)[1].size, 12345u);
  EXPECT_EQ((*r)[1].mtime, 1796163178);
  EXPECT_EQ((*r)[2].name, "odd\"\xc3\xbc\xf0\x9f\x98\x80");
}

TEST(Listing, IgnoresLinksOutsideTheDirectory) {
  auto r = ParseIndexPage(R"(<html><head><title>Index of /d/</title></head><body>
    <a href="../">../</a> <a href="/">Parent</a> <a href="?C=M;O=A">Sort</a>
    <a href="http://evil.example/x">x</a> <a href="//evil.example/y">y</a>
    <a href="sub/deeper">deep</a> <a href="ok.txt#frag">frag</a> <a href="./">.</a>
    <a href='single.txt'>s</a> <a HREF=bare.txt>b</a> <a href="amp&amp;.txt">a</a>
    <a href="bad%zz.txt">bad</a> <a href="nul%00.txt">nul</a> <a href="sl%2Fash">sl</a>
    <a href="mailto:x@y">m</a> <a href="./dot.txt">d</a></body></html>)",
                          "text/html");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"amp&.txt", "bare.txt", "dot.txt", "single.txt"}));
}

TEST(Listing, NamesThatCannotBeFileNamesAreDropped) {
  std::string page = "<title>Index of /</title><a href=\"ok\">ok</a><a href=\"nul";
  page += '\0';
  page += "x\">n</a><a href=\"" + std::string(256, 'l') + "\">long</a><a href=\"" +
          std::string(255, 'k') + "\">max</a>";
  auto r = ParseIndexPage(page, "text/html");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(Names(*r), (std::vector<std::string>{std::string(255, 'k'), "ok"}));
}

TEST(Listing, PagesOfAnyTitleAreKnownByLinksThatShowTheirNames) {
  // Go's http.FileServer: no title at all.
  auto go = ParseIndexPage(
      "<pre>\n<a href=\"d/\">d/</a>\n<a href=\"a%20b.txt\">a b.txt</a>\n"
      "<a href=\"x&amp;y\">x&amp;y</a>\n</pre>\n",
      "text/html");
  ASSERT_TRUE(go.has_value());
  EXPECT_EQ(Names(*go), (std::vector<std::string>{"a b.txt", "d/", "x&y"}));
  // Names cut short in the text, links outside the directory, markup inside.
  auto cut = ParseIndexPage(
      "<title>/files/</title><a href=\"../\">Up</a><a href=\"https://x.example/\">Made by</a>"
      "<a href=\"?sort=name\">Name</a><a href=\"long-name-of-a-file.tar.gz\">long-name-of..&gt;</a>"
      "<a href=\"./s/\"><svg><use/></svg> <span>s/</span></a>",
      "text/html");
  ASSERT_TRUE(cut.has_value());
  EXPECT_EQ(Names(*cut), (std::vector<std::string>{"long-name-of-a-file.tar.gz", "s/"}));
  // A site's own pages: links whose text is not the name.
  EXPECT_FALSE(
      ParseIndexPage("<title>/</title><a href=\"about.html\">About us</a>"
                     "<a href=\"index.html\">index.html</a>",
                     "text/html"));
  EXPECT_FALSE(ParseIndexPage("<a href=\"../\">../</a><a href=\"/x\">x</a>", "text/html"))
      << "no entry of the directory linked";
  EXPECT_FALSE(ParseIndexPage("<a href=\"a.txt\">a.txt", "text/html")) << "the link never closes";
}

TEST(Listing, CaddyJsonGivesTypesSizesAndTimes) {
  auto r = ParseIndexPage(
      R"([{"name":"d/","size":4096,"url":"./d/","mod_time":"2026-12-05T09:11:35.486401348Z","mode":2147484141,"is_dir":true,"is_symlink":false},
          {"name":"f.bin","size":12345,"url":"./f.bin","mod_time":"2026-12-01T23:12:58+01:00","mode":420,"is_dir":false,"is_symlink":false}])",
      "application/json");
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].name, "d");
  EXPECT_TRUE((*r)[0].is_dir);
  EXPECT_FALSE((*r)[0].size.has_value());
  EXPECT_EQ((*r)[0].mtime, 1796461895);  // 2026-12-05T09:11:35Z
  EXPECT_EQ((*r)[1].name, "f.bin");
  EXPECT_FALSE((*r)[1].is_dir);
  EXPECT_EQ((*r)[1].size, 12345u);
  EXPECT_EQ((*r)[1].mtime, 1796163178);
  EXPECT_FALSE(ParseIndexPage(R"([{"name":"x","is_dir":"yes"}])", "application/json"));
  auto empty = ParseIndexPage("null\n", "application/json");  // caddy: an empty directory
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
  EXPECT_FALSE(ParseIndexPage("null", "text/html"));
  // Links that never close: each looks no further than 4 KiB for its text.
  std::string open_links;
  for (int i = 0; i < 20000; ++i) open_links += "<a href=\"x\">";
  EXPECT_FALSE(ParseIndexPage(open_links + "x</a>", "text/html"));
}

TEST(Listing, OrdinaryPagesAreNotListings) {
  EXPECT_FALSE(
      ParseIndexPage("<html><title>Welcome</title><a href=\"a.txt\">a</a></html>", "text/html"));
  EXPECT_FALSE(ParseIndexPage("<html><title>404 Not Found</title></html>", "text/html"));
  EXPECT_FALSE(ParseIndexPage("", "text/html"));
  EXPECT_FALSE(ParseIndexPage("[1, 2", "application/json"));
  EXPECT_FALSE(ParseIndexPage("[{\"a\":1}]", "application/json"));
  EXPECT_FALSE(ParseIndexPage("{\"name\":\"x\"}", "application/json"));
  auto empty = ParseIndexPage("<title>Index of /e/</title><a href=\"../\">../</a>", "text/html");
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
}

TEST(Listing, SurvivesTruncatedAndHostileInput) {
  std::string page = Page("nginx.html");
  for (std::size_t n = 0; n < page.size(); n += 7) (void)ParseIndexPage(page.substr(0, n), "");
  std::string json = Page("nginx.json");
  for (std::size_t n = 0; n < json.size(); n += 5)
    (void)ParseIndexPage(json.substr(0, n), "application/json");
  std::string deep(100000, '[');
  EXPECT_FALSE(ParseIndexPage(deep, "application/json"));
  std::string nested = "[{\"name\":\"x\",\"type\":\"file\",\"z\":" + std::string(5000, '[') + "}]";
  EXPECT_FALSE(ParseIndexPage(nested, "application/json"));
}

TEST(Listing, MutatedPagesGiveOnlyUsableSortedNames) {
  // Every saved page, with bytes replaced, inserted and removed at random:
  // whatever is parsed is names a directory can hold, each once, in order.
  std::mt19937 rng(20261205);
  for (const char* name : {"nginx.html", "nginx.json", "apache.html", "lighttpd.html",
                           "python.html", "caddy.html", "caddy.json", "rclone.html"}) {
    std::string page = Page(name);
    ASSERT_FALSE(page.empty()) << name;
    for (int round = 0; round < 300; ++round) {
      auto r = ParseIndexPage(testing::Mutated(page, rng),
                              std::string(name).ends_with(".json") ? "application/json" : "");
      if (r)
        testing::ExpectUsableSortedNames(*r, name + std::string(" round ") + std::to_string(round));
    }
  }
}

}  // namespace
}  // namespace originfs

namespace originfs {
namespace {

TEST(Manifest, BuildsEveryDirectory) {
  std::size_t bad = 0;
  auto t = ParseManifest(
      "a/b/c.txt\t12\t1700000000.5\n# comment\n\ntop.bin\t3\n./x y/%#?\n"
      "a/d.txt\r\n",
      &bad);
  ASSERT_TRUE(t.has_value()) << "line " << bad;
  std::vector<std::string> root;
  for (const auto& e : t->at("")) root.push_back(e.name + (e.is_dir ? "/" : ""));
  EXPECT_EQ(root, (std::vector<std::string>{"a/", "top.bin", "x y/"}));
  ASSERT_EQ(t->at("a").size(), 2u);
  EXPECT_EQ(t->at("a")[0].name, "b");
  EXPECT_TRUE(t->at("a")[0].is_dir);
  EXPECT_EQ(t->at("a/b")[0].size, 12u);
  EXPECT_EQ(t->at("a/b")[0].mtime, 1700000000);
  EXPECT_EQ(t->at("x y")[0].name, "%#?");
}

TEST(Manifest, RefusesBadLinesByNumber) {
  for (auto [text, line] : std::vector<std::pair<std::string, std::size_t>>{{"ok\n../up\n", 2},
                                                                            {"a//b\n", 1},
                                                                            {"/abs\n", 1},
                                                                            {"f\tten\n", 1},
                                                                            {"f\t1\tnoon\n", 1},
                                                                            {"a\na/b\n", 2},
                                                                            {"x\t1\t2\t3\n", 1},
                                                                            {"d/\n", 1}}) {
    std::size_t bad = 0;
    EXPECT_FALSE(ParseManifest(text, &bad).has_value()) << text;
    EXPECT_EQ(bad, line) << text;
  }
}

}  // namespace
}  // namespace originfs

namespace originfs {
namespace {

TEST(ListingCoding, RoundTripsAndRefusesGarbage) {
  std::vector<ListedEntry> v = {{"a b", false, 12u, 1700000000},
                                {"d", true, std::nullopt, std::nullopt},
                                {"\xc3\xbc", false, std::nullopt, 5}};
  auto back = DecodeListing(EncodeListing(v));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, v);
  std::string bytes = EncodeListing(v);
  for (std::size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(DecodeListing(bytes.substr(0, n)).has_value()) << n;
  EXPECT_FALSE(DecodeListing("garbage").has_value());
  EXPECT_TRUE(DecodeListing(EncodeListing({})).has_value());
}

}  // namespace
}  // namespace originfs
