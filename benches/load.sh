#!/usr/bin/env bash
# Load held: peak RSS, processes and open files of one `imgforge build` of
# twelve images at several --jobs values, from a cold cache each time.
#
#   bash benches/load.sh [JOBS...]        (default: 1 2 8)
#
# The tree: the examples' base, and four variants of each example image
# (hello-1..4, whose build stages differ by an env value, so each compiles;
# nginx-1..4 and python-1..4, which differ by a label). Packages come from
# ../shared/debian and ../shared/debian-essential (no network). Needs runc,
# GNU time (/usr/bin/time) and python3; run as root (the configure step of a
# non-root run needs a subordinate id range, docs/sandbox.md).
#
# Per run it prints: jobs, wall seconds, peak RSS of the imgforge process
# tree's largest process (GNU time's "Maximum resident set size": imgforge
# itself, its children are reported apart), and from /proc sampled every
# 0.1 s: the most processes at once below imgforge (runc, the sandboxes'
# processes, compressors), the most file descriptors imgforge held, and the
# most held by the whole tree.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=("$@")
[ ${#jobs[@]} -gt 0 ] || jobs=(1 2 8)
bin="$PWD/target/release/imgforge"
[ -x "$bin" ] || bin="$PWD/target/debug/imgforge"
[ -x "$bin" ] || { echo "build imgforge first (cargo build --release)"; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/mirror/pool" "$work/tree/recipes"
ln -s "$PWD"/../shared/debian/pool/*.deb "$PWD"/../shared/debian-essential/pool/*.deb "$work/mirror/pool/"
cat ../shared/debian/Packages <(echo) ../shared/debian-essential/Packages >"$work/mirror/Packages"
cp -r base "$work/tree/"
cp -r recipes/hello recipes/imgforge.lock "$work/tree/recipes/"
for k in 1 2 3 4; do
  for r in hello nginx python; do
    sed -e "s/^name = \"$r\"/name = \"$r-$k\"/" \
      -e "s/^\"org.opencontainers.image.title\" = \"$r\"/\"org.opencontainers.image.title\" = \"$r-$k\"/" \
      "recipes/$r.toml" >"$work/tree/recipes/$r-$k.toml"
  done
  printf '\n[build.env]\nVARIANT = "%s"\n' "$k" >>"$work/tree/recipes/hello-$k.toml"
done
# One lock for the twelve (the variants pin what the examples pin).
"$bin" -q lock "$work/tree/recipes" --no-apt --mirror "$work/mirror" >/dev/null

sampler='
import os, sys, time
root = int(sys.argv[1])
def kids():
    m = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                s = open(f"/proc/{p}/stat").read()
                m.setdefault(int(s[s.rindex(")") + 2:].split()[1]), []).append(int(p))
            except OSError:
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        for c in m.get(p, []):
            out.append(c); todo.append(c)
    return out
def fds(p):
    try:
        return len(os.listdir(f"/proc/{p}/fd"))
    except OSError:
        return 0
procs = own = tree = 0
while os.path.exists(f"/proc/{root}"):
    k = kids()
    procs = max(procs, len(k)); own = max(own, fds(root)); tree = max(tree, fds(root) + sum(fds(c) for c in k))
    time.sleep(0.1)
print(procs, own, tree)
'
printf '| --jobs | images | wall s | peak RSS MiB (imgforge) | max processes below it | max fds (imgforge) | max fds (tree) |\n|---|---|---|---|---|---|---|\n'
for j in "${jobs[@]}"; do
  rm -rf "$work/cache" "$work/out"
  /usr/bin/time -v -o "$work/time.txt" "$bin" -q build "$work/tree/recipes" --no-apt --mirror "$work/mirror" \
    --out "$work/out" --cache "$work/cache" --jobs "$j" >"$work/build.log" 2>&1 &
  tpid=$!
  # GNU time's child is imgforge.
  for _ in $(seq 50); do ipid="$(pgrep -P "$tpid" || true)"; [ -n "$ipid" ] && break; sleep 0.05; done
  read -r procs own tree < <(python3 -c "$sampler" "$ipid")
  wait "$tpid" || { cat "$work/build.log"; exit 1; }
  rss=$(awk -F: '/Maximum resident set size/ {print int($2 / 1024)}' "$work/time.txt")
  wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$work/time.txt")
  n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["manifests"]))' "$work/out/index.json")
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$j" "$n" "$wall" "$rss" "$procs" "$own" "$tree"
done
