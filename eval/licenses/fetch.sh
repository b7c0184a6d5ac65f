#!/usr/bin/env bash
# Downloads the labelled set's .debs into DIR with the host's apt
# configuration (`apt-get download PKG=VERSION`) and checks each against the
# sha256 in packages.tsv. Debian's archive drops superseded versions; a
# version it no longer has is reported, and the rest is still fetched.
set -euo pipefail
dir="${1:?usage: eval/licenses/fetch.sh DIR}"
list="$(cd "$(dirname "$0")" && pwd)/packages.tsv"
mkdir -p "$dir"
cd "$dir"
missing=0
while IFS=$'\t' read -r pkg version _source _dep5 file sha; do
  [ "$pkg" = package ] && continue
  if [ ! -f "$file" ]; then
    apt-get download -q=2 "$pkg=$version" >/dev/null 2>&1 || {
      echo "not in the archive any more: $pkg=$version" >&2
      missing=$((missing + 1))
      continue
    }
  fi
  echo "$sha  $file" | sha256sum --check --quiet || { echo "sha256 mismatch: $file" >&2; exit 1; }
done <"$list"
echo "$(ls -1 ./*.deb | wc -l) .deb in $dir; $missing missing"
