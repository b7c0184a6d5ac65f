#!/usr/bin/env bash
# The apt way, for the real-world benchmark (benches/realworld.rs): the same
# images built as a team does without imgforge. mmdebstrap makes the base
# root (Debian's Essential set, apt and the base packages), buildah imports
# it, and each image is a Containerfile `FROM base` whose RUN installs the
# image's pinned packages with apt-get from a local apt repository, exported
# with `buildah push oci:`. Every run starts from an empty buildah storage.
#
# Usage: apt-way.sh REPO BASE_PKGS SETS OUT
#   REPO       a local apt repository (dists/bookworm/main, pool/main)
#   BASE_PKGS  a file: the base's name=version lines
#   SETS       a file: one line per image, "name pkg=ver pkg=ver ..."
#   OUT        where the OCI layouts go (one per image)
set -euo pipefail
REPO=$1 BASE_PKGS=$2 SETS=$3 OUT=$4
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}
export TZ=UTC LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive BUILDAH_ISOLATION=chroot
WORK=$(mktemp -d "${TMPDIR:-/tmp}/apt-way.XXXXXX")
trap 'buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs rm --all >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
B=(buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
T0=$(date +%s.%N)
say() { printf '[apt-way %6ss] %s\n' "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" "$*" >&2; }
mkdir -p "$OUT" "$WORK/ctx"

say "mmdebstrap: the base"
mmdebstrap --quiet --mode=root --variant=essential --format=tar \
	--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
	--include="apt,$(paste -sd, "$BASE_PKGS")" \
	--customize-hook='echo "deb [trusted=yes] file:///mirror bookworm main" > "$1/etc/apt/sources.list"' \
	bookworm "$WORK/base.tar" "deb [trusted=yes] copy://$REPO bookworm main"
c=$("${B[@]}" from scratch)
"${B[@]}" add "$c" "$WORK/base.tar" / >/dev/null
"${B[@]}" commit --quiet --timestamp "$SOURCE_DATE_EPOCH" "$c" base >/dev/null
"${B[@]}" push --quiet base "oci:$OUT/base:latest"

while read -r name pkgs; do
	[ -n "$name" ] || continue
	say "buildah: $name"
	cat >"$WORK/ctx/Containerfile" <<-EOF
		FROM base
		RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends $pkgs >/dev/null && rm -rf /var/lib/apt/lists/*
	EOF
	"${B[@]}" build --quiet --isolation chroot --format oci --pull=never --layers=false \
		--timestamp "$SOURCE_DATE_EPOCH" --volume "$REPO:/mirror:ro" \
		-t "$name" -f "$WORK/ctx/Containerfile" "$WORK/ctx" >/dev/null
	"${B[@]}" push --quiet "$name" "oci:$OUT/$name:latest"
done <"$SETS"
say "done"
