#!/usr/bin/env bash
# --help, the README's tables, the man pages, the bash completion and the
# parsers' own tables say the same:
#   - the -o options of --help are exactly the options the parser knows
#     (ORIGINFS_OPTION in core/config/mount_options.cc) and exactly those of
#     README's Options table, and each is in the rendered originfs(8) and
#     offered by the completion after -o;
#   - the commands of --help are exactly those main.cc dispatches; each, with
#     its flags, is in README's Usage block, in originfs(8)'s SYNOPSIS, and
#     offered by the completion;
#   - the rule keys of README's table are exactly kRuleKeys of
#     core/config/rules.cc, each is in the rendered originfs-rules(5), and
#     `originfs check` knows each (an unknown key is refused: checked too);
#   - both man pages render with man(1) without a warning.
#   tests/package/docs_sync.sh ORIGINFS_BINARY SOURCE_DIR GENERATED_DIR
# GENERATED_DIR holds originfs.8, originfs-rules.5, originfs.bash-completion
# (build/mount-helpers).
set -euo pipefail
bin=$1 src=$2 gen=$3
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
command -v man >/dev/null || { echo "SKIP: man(1) (man-db) is not installed"; exit 77; }
t=$(mktemp -d /tmp/originfs-docs.XXXXXX)
trap 'rm -rf "$t"' EXIT

# Sorted, unique lines of stdin into file $1.
set_of() { LC_ALL=C sort -u >"$t/$1"; }
# Lines of $1 not in $2 (both set files).
missing() { LC_ALL=C comm -23 "$t/$1" "$t/$2"; }
same_sets() {  # A B what
  local m
  m=$(missing "$1" "$2" | tr '\n' ' ')
  [ -z "$m" ] || fail "$3: in $1 but not in $2: $m"
  m=$(missing "$2" "$1" | tr '\n' ' ')
  [ -z "$m" ] || fail "$3: in $2 but not in $1: $m"
}

help=$("$bin" --help)
# The rows of the README table under heading $1.
readme_table() {
  awk -v h="$1" '$0 == h { f = 1; next } f && /^\|/ { t = 1; print; next } f && t { exit }' "$src/README.md"
}
# man(1) renders in plain ASCII here (hyphens stay '-'), lines joined so
# that a phrase broken by the formatter is still found.
render() {
  LC_ALL=C MANWIDTH=80 man --warnings -l "$1" 2>"$t/man.err" >"$t/man.out" ||
    fail "man -l $1 exited $?"
  if [ -s "$t/man.err" ]; then fail "man -l $1 warned: $(head -5 "$t/man.err")"; fi
  tr -s ' \n' '  ' <"$t/man.out"
}
man8=$(render "$gen/originfs.8")
man5=$(render "$gen/originfs-rules.5")
[[ $man8 == *"NAME originfs - mount a bucket directory"* ]] || fail "originfs(8) has no NAME line"
[[ $man5 == *"NAME originfs-rules - "* ]] || fail "originfs-rules(5) has no NAME line"

# --- -o options -------------------------------------------------------------
# Terms of the Options block: "  name=VALUE   text" (two spaces before text).
printf '%s\n' "$help" | sed -n '/^Options (-o/,/^$/p' | grep -E '^  [a-z]' | grep -E '^  [^ ]+.*  ' |
  sed -E 's/^  //; s/  .*//' | tr ',' '\n' | sed -E 's/^ *//' | grep -E '^[a-z_]+(=|\[=)' |
  sed -E 's/(\[=|=).*//' | set_of help_options
tr -s ' \n' '  ' <"$src/core/config/mount_options.cc" | grep -oE 'ORIGINFS_OPTION\( ?"[a-z_]+"' |
  sed -E 's/.*"([a-z_]+)"/\1/' |
  set_of parser_options
readme_table "### Options" | grep -E '^\| `' | cut -d'|' -f2 |
  grep -oE '`[a-z_]+(=|\[=)' | sed -E 's/`//; s/(\[=|=).*//' | set_of readme_options
[ "$(wc -l <"$t/help_options")" -ge 20 ] || fail "read only $(wc -l <"$t/help_options") options from --help"
same_sets help_options parser_options "-o options (--help vs core/config/mount_options.cc)"
same_sets help_options readme_options "-o options (--help vs README's Options table)"
opts_section=${man8#* OPTIONS }
opts_section=${opts_section%% NOTES *}
while read -r o; do
  [[ $opts_section == *" $o="* || $opts_section == *" $o[="* ]] || fail "originfs(8) OPTIONS lacks $o="
done <"$t/help_options"

# --- commands ---------------------------------------------------------------
printf '%s\n' "$help" | sed -n '1,/^$/p' | grep -oE '^(usage:)? +originfs [a-z]+' | awk '{print $NF}' |
  set_of help_commands
grep -oE 'a == "[a-z]+"' "$src/fs/main.cc" | sed -E 's/a == "//; s/"//' | grep -vx help | set_of main_commands
same_sets help_commands main_commands "commands (--help vs fs/main.cc)"
readme_usage=$(awk '/^## Usage$/ { u = 1; next } u && /^```/ { if (b) exit; b = 1; next } u && b' "$src/README.md")
synopsis=${man8#* SYNOPSIS }
synopsis=${synopsis%% DESCRIPTION *}
# The flags (--list, -j) on the lines of stdin, sorted, on one line.
flags_of() { { grep -oE -- '-(-[a-z]+|[a-z])\b' || true; } | sort -u | tr '\n' ' '; }
while read -r c; do
  flags_help=$(printf '%s\n' "$help" | grep -E "^(usage:)? +originfs $c( |$)" | flags_of)
  flags_readme=$(printf '%s\n' "$readme_usage" | grep -E "^originfs $c( |$)" | flags_of)
  printf '%s\n' "$readme_usage" | grep -qE "^originfs $c( |$)" || fail "README's Usage block lacks 'originfs $c'"
  [ "$flags_help" = "$flags_readme" ] || fail "flags of '$c': --help has [$flags_help], README's Usage [$flags_readme]"
done <"$t/help_commands"
# Every synopsis line of --help (its term, before the two-space gap) is in SYNOPSIS.
printf '%s\n' "$help" | sed -n '1,/^$/p' | grep -E '^(usage:)? +originfs ' | sed -E 's/^(usage:)? +//; s/  .*//' |
  while IFS= read -r line; do
    [[ $synopsis == *"$line"* ]] || echo "$line"
  done >"$t/synopsis_missing"
[ ! -s "$t/synopsis_missing" ] || fail "originfs(8) SYNOPSIS lacks: $(tr '\n' ';' <"$t/synopsis_missing")"
for word in "warm MOUNTPOINT [-j N] --recursive DIR..." "DIR/ reads a directory's listing again" \
  "refresh --recursive [-j N] MOUNTPOINT DIR..."; do
  [[ $(printf '%s' "$help" | tr -s ' \n' '  ') == *"$word"* ]] || fail "--help lacks '$word'"
  [[ $man8 == *"$word"* ]] || fail "originfs(8) lacks '$word'"
done

# --- rule keys --------------------------------------------------------------
readme_table "#### Every rule key" | grep -E '^\| `' | cut -d'|' -f2 |
  grep -oE '`[a-z_0-9]+`' | tr -d '`' | set_of readme_keys
awk '/constexpr RuleKey kRuleKeys\[\] = \{/,/^};/' "$src/core/config/rules.cc" |
  grep -oE '^    \{"[a-z_0-9]+",' | sed -E 's/^    \{"//; s/",//' | set_of parser_keys
[ "$(wc -l <"$t/readme_keys")" -ge 30 ] || fail "read only $(wc -l <"$t/readme_keys") rule keys from README"
same_sets readme_keys parser_keys "rule keys (README's table vs kRuleKeys in core/config/rules.cc)"
keys_section=${man5#* RULE KEYS }
keys_section=${keys_section%% EXAMPLE *}
check_key() {  # KEY: prints what `originfs check` says of a rule with KEY set
  printf '[[rule]]\nprefix = "docs-sync/"\norigin = "http://127.0.0.1:9"\n%s = { x = 1 }\n' "$1" >"$t/rules.toml"
  chmod 600 "$t/rules.toml"
  "$bin" check "$t/rules.toml" 2>&1 || true
}
[[ $(check_key no_such_key_docs_sync) == *'unknown key "no_such_key_docs_sync"'* ]] ||
  fail "originfs check does not refuse an unknown key (the next check would prove nothing)"
while read -r k; do
  [[ $keys_section == *" $k "* || $keys_section == *" $k("* ]] || fail "originfs-rules(5) lacks key $k"
  [[ $k == prefix || $k == origin ]] && continue  # set above already: a TOML redefinition
  [[ $(check_key "$k") != *"unknown key \"$k\""* ]] || fail "originfs check does not know rule key $k"
done <"$t/readme_keys"

# --- completion ---------------------------------------------------------------
comp=$gen/originfs.bash-completion
bash -n "$comp" || fail "bash -n $comp"
# complete WORDS...: the candidates for the last word, one a line.
complete_words() {
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _originfs; printf "%s\n" "${COMPREPLY[@]}"' \
    _ "$comp" "$@"
}
offered=$(complete_words originfs "")
while read -r c; do
  grep -qx "$c" <<<"$offered" || fail "completion does not offer command $c"
  for f in $(printf '%s\n' "$help" | grep -E "^(usage:)? +originfs $c( |$)" | flags_of); do
    grep -qx -- "$f" <<<"$(complete_words originfs "$c" "${f:0:2}")" || fail "completion does not offer $c $f"
  done
done <"$t/help_commands"
for v in --help --version; do grep -qx -- "$v" <<<"$offered" || fail "completion does not offer $v"; done
while read -r o; do
  got=$(complete_words originfs /b /m -o "rules=/x,${o:0:3}")
  grep -qxE "rules=/x,$o=?" <<<"$got" || fail "completion after -o does not offer $o"
done <"$t/help_options"
[ "$(complete_words originfs /b /m -o log_level=w)" = "log_level=warn" ] || fail "completion of log_level="

[ "$fails" -eq 0 ] || { echo "$fails check(s) failed" >&2; exit 1; }
echo "OK: $(wc -l <"$t/help_options") options, $(wc -l <"$t/help_commands") commands, $(wc -l <"$t/readme_keys") rule keys agree"
