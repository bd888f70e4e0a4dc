#!/usr/bin/env bash
# Vendored upstream CRDs (tests/chart/crds/*.yaml) against crds.lock.
#   tests/chart/crds/refresh.sh --check            verify every file's sha256 (offline; what the tests also do)
#   tests/chart/crds/refresh.sh                    download every file at the tag in crds.lock from
#                                                  raw.githubusercontent.com, check that the tag still points at
#                                                  the commit in crds.lock, and rewrite the sha256 column
#   tests/chart/crds/refresh.sh --from-clone DIR   the same from local clones: DIR/<owner>+<name> (git show tag:path)
# To move to a new upstream release: edit the tag and commit columns in crds.lock, run the script, run the tests.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lock=$here/crds.lock
mode=download
clones=""
case "${1:-}" in
  --check) mode=check ;;
  --from-clone) mode=clone; clones=${2:?--from-clone needs a directory} ;;
  "") ;;
  *) echo "usage: $0 [--check | --from-clone DIR]" >&2; exit 2 ;;
esac

tmp=$(mktemp); trap 'rm -f "$tmp" "$tmp".*' EXIT
status=0
while IFS=$'\t' read -r file repo tag commit path sum; do
  case "$file" in ''|'#'*) echo "$file${repo:+	$repo	$tag	$commit	$path	$sum}" >>"$tmp"; continue ;; esac
  target=$here/$file
  if [ "$mode" = check ]; then
    if [ ! -f "$target" ]; then echo "$file: missing (listed in crds.lock)" >&2; status=1; continue; fi
    got=$(sha256sum "$target" | cut -d' ' -f1)
    if [ "$got" != "$sum" ]; then echo "$file: sha256 $got, crds.lock says $sum" >&2; status=1; fi
    continue
  fi
  if [ "$mode" = clone ]; then
    dir=$clones/${repo/\//+}
    [ -d "$dir/repo" ] && dir=$dir/repo
    got_commit=$(git -C "$dir" rev-parse "$tag^{commit}")
    git -C "$dir" show "$tag:$path" >"$target.new"
  else
    got_commit=$(git ls-remote "https://github.com/$repo" "refs/tags/$tag^{}" "refs/tags/$tag" | head -1 | cut -f1)
    curl -fsSL "https://raw.githubusercontent.com/$repo/$tag/$path" -o "$target.new"
  fi
  if [ "$got_commit" != "$commit" ]; then
    echo "$file: tag $tag of $repo is commit $got_commit, crds.lock says $commit (update the commit column if the move is intended)" >&2
    rm -f "$target.new"; exit 1
  fi
  mv "$target.new" "$target"
  sum=$(sha256sum "$target" | cut -d' ' -f1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$file" "$repo" "$tag" "$commit" "$path" "$sum" >>"$tmp"
  echo "$file: $repo@$tag $sum"
done <"$lock"
if [ "$mode" = check ]; then
  [ "$status" -eq 0 ] && echo "crds.lock: every vendored CRD matches"
  exit "$status"
fi
mv "$tmp" "$lock"
