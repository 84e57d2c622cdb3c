#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# `make deb [ARCH=amd64|arm64]`: FaceGate's three Debian packages into <target>/deb/, then lintian.
#
#   facegate_<v>_<arch>.deb              facegated and facegatectl, the unit, sysusers, tmpfiles,
#                                        the udev rule and the bus policy, /etc/facegate/facegate.toml
#                                        (a conffile), the gate pipelines, docs, and ONNX Runtime in
#                                        /usr/lib/facegate
#   facegate-models_<v>_all.deb          the default (commercially usable) models with their cards,
#                                        SHA256SUMS, calibration and licences, in /usr/share/facegate
#   gstreamer1.0-facegate_<v>_<arch>.deb the plugin, for gst-launch-1.0 users
#
# Built with dpkg-deb from a staged tree: the control files are written here, Depends by hand
# (cargo-deb's automatic Depends cannot see an arm64 sysroot's libraries). amd64 is built on the
# host (`cargo build --release`); arm64 by scripts/cross-arm64.sh, with the aarch64 ONNX Runtime
# from PyPI (models/manifest.toml pins the wheel and the library inside it).
#
# Any failure ends it with one line saying what failed, and a non-zero exit.
set -Eeuo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ASSETS=${FACEGATE_ASSETS:-$REPO/.assets}
CACHE=${FACEGATE_CACHE:-$HOME/.cache/facegate}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
ARCH=${1:-amd64}
OUT=$TARGET_DIR/deb
START=$SECONDS

say() { echo "deb: $*"; }
fail() { echo "deb: error: $*" >&2; exit 1; }
trap 'fail "unexpected failure at scripts/make-debs.sh line $LINENO: $BASH_COMMAND"' ERR

command -v dpkg-deb >/dev/null || fail "dpkg-deb not found: this script expects Debian 12"
source "$REPO/scripts/debian.sh"
ensure_debian_packages lintian help2man
VERSION=$(workspace_version)

# ---------------------------------------------------------------------------- the binaries
case $ARCH in
    amd64)
        [ "$(uname -m)" = x86_64 ] || fail "ARCH=amd64 is built on an x86_64 machine, this one is $(uname -m)"
        # For any x86-64 CPU: .cargo/config.toml builds FAISS for x86-64-v3 (AVX2) on developer
        # machines, which would die of an illegal instruction on an older gate. faiss-sys does not
        # rebuild when its flags change, hence a target directory of its own.
        say "cargo build --release for generic x86-64 (facegated, facegatectl, the plugin)"
        (cd "$REPO" && CARGO_TARGET_DIR=$TARGET_DIR/deb-amd64 \
            CXXFLAGS_x86_64_unknown_linux_gnu="-ffile-prefix-map=$HOME/.cargo/registry/src=/cargo/registry/src" \
            cargo build --release -p facegated -p facegatectl -p gst-plugin-facegate) ||
            fail "the release build failed (cargo's errors above)"
        BIN=$TARGET_DIR/deb-amd64/release
        STRIP=strip
        MULTIARCH=x86_64-linux-gnu
        ORT=$ASSETS/onnxruntime/libonnxruntime.so.1.32.0
        [ -f "$ORT" ] || fail "$ORT is missing: run \`make setup\`"
        ;;
    arm64)
        bash "$REPO/scripts/cross-arm64.sh"
        BIN=$TARGET_DIR/aarch64-unknown-linux-gnu/release
        STRIP=aarch64-linux-gnu-strip
        MULTIARCH=aarch64-linux-gnu
        # The aarch64 library, from the wheel the manifest pins (both sums checked).
        key=archives.onnxruntime-wheel-aarch64
        wheel=$CACHE/$(toml "$REPO/models/manifest.toml" $key.file)
        if [ ! -f "$wheel" ]; then
            say "downloading $(basename "$wheel") into $CACHE"
            mkdir -p "$CACHE"
            pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
                --platform "$(toml "$REPO/models/manifest.toml" $key.platform)" \
                "onnxruntime==$(toml "$REPO/models/manifest.toml" $key.version)" -d "$CACHE" ||
                fail "pip download of the aarch64 onnxruntime wheel failed"
        fi
        [ "$(sha256sum <"$wheel" | cut -d' ' -f1)" = "$(toml "$REPO/models/manifest.toml" $key.sha256)" ] ||
            { rm -f "$wheel"; fail "$wheel: sha256 differs from models/manifest.toml's $key (removed; run again)"; }
        ORT=$TARGET_DIR/aarch64-unknown-linux-gnu/libonnxruntime.so.1.32.0
        python3 -c 'import sys, zipfile; open(sys.argv[3], "wb").write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
            "$wheel" "$(toml "$REPO/models/manifest.toml" $key.member)" "$ORT"
        [ "$(sha256sum <"$ORT" | cut -d' ' -f1)" = "$(toml "$REPO/models/manifest.toml" $key.member_sha256)" ] ||
            fail "the library in $wheel differs from models/manifest.toml's $key.member_sha256"
        ;;
    *) fail "ARCH must be amd64 or arm64, not $ARCH" ;;
esac
for f in facegated facegatectl libgstfacegate.so; do
    [ -f "$BIN/$f" ] || fail "$BIN/$f was not built"
done
MODELS=$ASSETS/models
for f in facegate_yunet_2023mar.onnx facegate_sface_2021dec.onnx facegate_sface_2021dec.card.toml; do
    [ -f "$MODELS/$f" ] || fail "$MODELS/$f is missing: run \`make setup\`"
done

# The last commit's time for every date in the packages (file times, the manual pages), so that
# two builds of one commit give the same packages. Set after the build: cargo rebuilds what reads
# SOURCE_DATE_EPOCH whenever it changes, which would be at every commit.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct)}

# ---------------------------------------------------------------------------- staging helpers
STAGE=$OUT/stage-$ARCH
rm -rf "$STAGE"
mkdir -p "$OUT"

# What every package's /usr/share/doc/<pkg> needs: copyright and a compressed changelog.
docs() {
    local pkg=$1 root=$2 doc
    doc=$root/usr/share/doc/$pkg
    install -d "$doc"
    cp "$REPO/packaging/copyright" "$doc/copyright"
    [ "$pkg" = facegate-models ] && cat "$REPO/packaging/copyright.models" >>"$doc/copyright"
    sed "s/@PACKAGE@/$pkg/; s/@VERSION@/$VERSION/" "$REPO/packaging/changelog" | gzip -9n >"$doc/changelog.gz"
    # What lintian reports and is left as it is, each with its reason (packaging/lintian/).
    install -D -m 0644 "$REPO/packaging/lintian/$pkg" "$root/usr/share/lintian/overrides/$pkg"
}

# A manual page from the program's --help (help2man), run on this machine: under
# qemu-aarch64-static against the sysroot for arm64.
manual() {
    local program=$1 root=$2 section=$3 description=$4 runner
    runner=$(mktemp -d)/$(basename "$program")
    if [ "$ARCH" = arm64 ]; then
        local sysroot=$ASSETS/arm64-sysroot
        printf '#!/bin/sh\nexec qemu-aarch64-static -L %s -E LD_LIBRARY_PATH=%s %s "$@"\n' \
            "$sysroot" "$sysroot/usr/lib/$MULTIARCH/openblas-pthread" "$program" >"$runner"
    else
        printf '#!/bin/sh\nexec %s "$@"\n' "$program" >"$runner"
    fi
    chmod +x "$runner"
    install -d "$root/usr/share/man/man$section"
    help2man --no-info --section="$section" --name="$description" --version-string="$VERSION" \
        "$runner" | gzip -9n >"$root/usr/share/man/man$section/$(basename "$program").$section.gz" ||
        fail "help2man could not run $program"
    rm -rf "$(dirname "$runner")"
}

# DEBIAN/control from packaging/<pkg>.control, the size and md5sums from the tree, then the .deb.
package() {
    local pkg=$1 root=$2 arch=$3 size
    install -d "$root/DEBIAN"
    # As dpkg-gencontrol counts it: each file's size in KiB rounded up, and 1 for each other entry,
    # whatever file system the tree is staged on.
    size=$(find "$root" -mindepth 1 -path "$root/DEBIAN" -prune -o -printf '%y %s\n' |
        awk '{ total += ($1 == "f") ? int(($2 + 1023) / 1024) : 1 } END { print total }')
    sed "s/@VERSION@/$VERSION/; s/@ARCH@/$arch/; s/@SIZE@/$size/" "$REPO/packaging/$pkg.control" >"$root/DEBIAN/control"
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
    # Owned by root (dpkg-deb --root-owner-group), modes from install -m and umask 022 whoever
    # builds; the same mtime for every file, so two builds of one commit give the same package.
    find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    local deb=$OUT/${pkg}_${VERSION}_${arch}.deb
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null ||
        fail "dpkg-deb could not build $pkg"
    say "$(basename "$deb"): $(du -h "$deb" | cut -f1)"
}

# ---------------------------------------------------------------------------- facegate
root=$STAGE/facegate
install -d "$root/usr/bin" "$root/usr/lib/facegate"
for f in facegated facegatectl; do
    "$STRIP" -o "$root/usr/bin/$f" "$BIN/$f"
    chmod 0755 "$root/usr/bin/$f"
done
install -m 0644 "$ORT" "$root/usr/lib/facegate/libonnxruntime.so.1.32.0"
ln -s libonnxruntime.so.1.32.0 "$root/usr/lib/facegate/libonnxruntime.so"
install -D -m 0644 "$REPO/systemd/facegated.service" "$root/usr/lib/systemd/system/facegated.service"
install -D -m 0644 "$REPO/systemd/facegate.sysusers" "$root/usr/lib/sysusers.d/facegate.conf"
install -D -m 0644 "$REPO/systemd/facegate.tmpfiles" "$root/usr/lib/tmpfiles.d/facegate.conf"
install -D -m 0644 "$REPO/systemd/60-facegate-gpio.rules" "$root/usr/lib/udev/rules.d/60-facegate-gpio.rules"
install -D -m 0644 "$REPO/systemd/org.facegate.Gate.conf" "$root/usr/share/dbus-1/system.d/org.facegate.Gate.conf"
install -D -m 0644 "$REPO/config/facegate.toml" "$root/etc/facegate/facegate.toml"
install -d "$root/usr/share/facegate/pipelines"
install -m 0644 "$REPO/pipelines/gate.pipeline" "$REPO/pipelines/gate-v4l2.pipeline" "$root/usr/share/facegate/pipelines/"
docs facegate "$root"
manual "$BIN/facegated" "$root" 8 "the FaceGate gate service"
manual "$BIN/facegatectl" "$root" 1 "operate a FaceGate face-pay gate"
# The unit's Documentation= names GATE-SERVICE.md uncompressed.
install -m 0644 "$REPO/docs/GATE-SERVICE.md" "$REPO/docs/APPLIANCE.md" "$root/usr/share/doc/facegate/"
install -d "$root/DEBIAN"
echo /etc/facegate/facegate.toml >"$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$REPO/packaging/facegate.$script" "$root/DEBIAN/$script"
done
package facegate "$root" "$ARCH"

# ---------------------------------------------------------------------------- facegate-models
root=$STAGE/facegate-models
install -d "$root/usr/share/facegate/models" "$root/usr/share/facegate/calibration"
for f in facegate_yunet_2023mar.onnx facegate_sface_2021dec.onnx facegate_sface_2021dec.card.toml; do
    install -m 0644 "$MODELS/$f" "$root/usr/share/facegate/models/"
done
(cd "$root/usr/share/facegate/models" && sha256sum ./*.onnx | sed 's| \./| |' >SHA256SUMS)
install -m 0644 "$REPO/models/calibration/facegate_sface_2021dec.toml" "$root/usr/share/facegate/calibration/"
docs facegate-models "$root"
package facegate-models "$root" all

# ---------------------------------------------------------------------------- the plugin
root=$STAGE/gstreamer1.0-facegate
install -d "$root/usr/lib/$MULTIARCH/gstreamer-1.0"
"$STRIP" --strip-unneeded -o "$root/usr/lib/$MULTIARCH/gstreamer-1.0/libgstfacegate.so" "$BIN/libgstfacegate.so"
chmod 0644 "$root/usr/lib/$MULTIARCH/gstreamer-1.0/libgstfacegate.so"
docs gstreamer1.0-facegate "$root"
package gstreamer1.0-facegate "$root" "$ARCH"

# ---------------------------------------------------------------------------- lintian
# Errors and warnings fail the build; what is left is overridden in packaging/lintian/, with why.
say "lintian"
lintian --profile debian --fail-on error,warning \
    "$OUT/facegate_${VERSION}_${ARCH}.deb" "$OUT/facegate-models_${VERSION}_all.deb" \
    "$OUT/gstreamer1.0-facegate_${VERSION}_${ARCH}.deb" ||
    fail "lintian reports errors or warnings (above)"
say "done in $((SECONDS - START)) s"
