#!/bin/sh
# Regenerates the expected closures in this directory: what apt 2.6 installs
# (`apt-get install --simulate --no-install-recommends`, empty dpkg status,
# amd64 only) from the frozen indexes in ../shared/debian-index, read as a
# local repository exactly as that directory's README shows.
# Usage (from the project root): sh tests/data/apt-closures/make.sh
set -eu
out=$(cd "$(dirname "$0")" && pwd)
idx=$(cd ../shared/debian-index && pwd)
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
cd "$w"
for s in bookworm bookworm-updates bookworm-security; do
  d=repo/dists/$s/main/binary-amd64; mkdir -p $d
  xz -dc "$idx/$s-main-amd64-Packages.xz" > $d/Packages
  (cd repo && apt-ftparchive -o APT::FTPArchive::Release::Suite=$s \
     -o APT::FTPArchive::Release::Components=main \
     -o APT::FTPArchive::Release::Architectures=amd64 release dists/$s > R && mv R dists/$s/Release)
  echo "deb [trusted=yes] file://$PWD/repo $s main"
done > sources.list
mkdir -p lists/partial cache/archives/partial; : > status
O="-o Dir::Etc::sourcelist=$PWD/sources.list -o Dir::Etc::sourceparts=/dev/null
   -o Dir::State::lists=$PWD/lists -o Dir::State::status=$PWD/status -o Dir::Cache=$PWD/cache
   -o Dir::Etc::preferences=/dev/null -o Dir::Etc::preferencesparts=/dev/null
   -o APT::Architectures::=amd64 -o APT::Architecture=amd64"
apt-get $O update -qq
while read -r name pkgs; do
  case "$name" in ''|'#'*) continue;; esac
  {
    echo "# apt-get install --simulate --no-install-recommends $pkgs"
    apt-get $O install --simulate --no-install-recommends $pkgs 2>/dev/null \
      | awk '/^Inst /{v=$3; sub(/^\(/,"",v); print $2, v}' | sort
  } > "$out/$name.txt"
done < "$out/sets"
