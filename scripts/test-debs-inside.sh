#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Runs inside the chroot scripts/test-debs.sh makes: each check prints one "deb-test:" line, and
# the first that fails ends it with "deb-test: FAILED: …".
set -eu
cd /tmp/facegate
ok() { echo "deb-test: ok: $*"; }
failed() { echo "deb-test: FAILED: $*"; exit 1; }
export DEBIAN_FRONTEND=noninteractive
# Nothing of the build machine's environment: the packages must find their models and ONNX
# Runtime in their own paths (make exports FACEGATE_* and ORT_DYLIB_PATH, and the chroot inherits).
for variable in $(env | sed -n 's/^\(FACEGATE_[A-Z_]*\|ORT_[A-Z_]*\|GST_PLUGIN_PATH\)=.*/\1/p'); do
    unset "$variable"
done

apt-get install -y -q ./facegate_*.deb ./facegate-models_*.deb ./gstreamer1.0-facegate_*.deb >/tmp/apt.log 2>&1 ||
    failed "apt-get install of the packages: $(grep -m1 '^E:' /tmp/apt.log || tail -n1 /tmp/apt.log)"
ok "apt-get installed facegate, facegate-models and gstreamer1.0-facegate with their Depends"

facegated --version >/dev/null || failed "facegated does not start"
facegatectl --version >/dev/null || failed "facegatectl does not start"
ok "$(facegated --version) and $(facegatectl --version) start"

getent passwd facegate >/dev/null || failed "no user facegate (sysusers)"
getent group facegate-staff >/dev/null || failed "no group facegate-staff"
id -nG facegate | grep -qw gpio || failed "facegate is not in group gpio: $(id -nG facegate)"
id -nG facegate | grep -qw video || failed "facegate is not in group video: $(id -nG facegate)"
[ "$(stat -c %U:%G:%a /var/lib/facegate)" = facegate:facegate:750 ] ||
    failed "/var/lib/facegate is $(stat -c %U:%G:%a /var/lib/facegate), not facegate:facegate:750 (tmpfiles)"
ok "user facegate in groups gpio and video, group facegate-staff, /var/lib/facegate facegate:facegate 0750"

[ -L /etc/systemd/system/multi-user.target.wants/facegated.service ] || failed "facegated.service is not enabled"
ok "facegated.service enabled (multi-user.target)"

dpkg-query -W -f='${Conffiles}\n' facegate | grep -q /etc/facegate/facegate.toml ||
    failed "/etc/facegate/facegate.toml is not a conffile"
(cd /usr/share/facegate/models && sha256sum --quiet -c SHA256SUMS) || failed "the models' SHA256SUMS do not hold"
ok "/etc/facegate/facegate.toml is a conffile; the models match SHA256SUMS"

export GST_REGISTRY=/tmp/gst-registry.bin
gst-inspect-1.0 facegate >/tmp/inspect.log 2>&1 || failed "gst-inspect-1.0 facegate: $(tail -n1 /tmp/inspect.log)"
for element in fgdetect fgtrack fgembed fglive fgmatch fgoverlay fgmetadump fgqr; do
    grep -q "$element" /tmp/inspect.log || failed "the plugin has no $element"
done
ok "gst-inspect-1.0 loads the plugin from the GStreamer plugin directory with its eight elements"

# Nothing but the packages: their models, their ONNX Runtime, no FACEGATE_ or ORT_ variable.
facegatectl enroll --gallery /tmp/gallery --id biden --label Biden biden.jpg >/tmp/enrol.log 2>&1 ||
    failed "facegatectl enroll: $(tail -n1 /tmp/enrol.log)"
facegatectl identify --gallery /tmp/gallery biden.jpg >/tmp/identify.log 2>/tmp/identify.err ||
    failed "facegatectl identify: $(tail -n1 /tmp/identify.err)"
grep -q '"id":"biden"' /tmp/identify.log || failed "facegatectl identify did not find biden: $(head -c 300 /tmp/identify.log)"
ok "facegatectl enrolled a photo and identified it on the packaged models and ONNX Runtime"

# What an operator leaves: an edited configuration, a journal, a gallery.
echo "# edited by the operator" >>/etc/facegate/facegate.toml
touch /var/lib/facegate/journal.sqlite
install -d -o facegate -g facegate /var/lib/facegate/gallery

dpkg -r gstreamer1.0-facegate facegate facegate-models >/tmp/remove.log 2>&1 ||
    failed "dpkg -r: $(tail -n1 /tmp/remove.log)"
[ ! -e /usr/bin/facegated ] && [ ! -e /usr/bin/facegatectl ] || failed "the programs are still installed after dpkg -r"
[ ! -e /usr/share/facegate ] || failed "/usr/share/facegate is left after dpkg -r: $(find /usr/share/facegate | head -3)"
grep -q "edited by the operator" /etc/facegate/facegate.toml || failed "dpkg -r lost the edited conffile"
[ -f /var/lib/facegate/journal.sqlite ] || failed "dpkg -r removed the journal"
ok "dpkg -r removed the programs, kept the edited /etc/facegate/facegate.toml and /var/lib/facegate"

dpkg -P gstreamer1.0-facegate facegate facegate-models >/tmp/purge.log 2>&1 ||
    failed "dpkg -P: $(tail -n1 /tmp/purge.log)"
[ ! -e /etc/facegate ] || failed "/etc/facegate is left after dpkg -P: $(ls -A /etc/facegate)"
[ ! -e /etc/systemd/system/multi-user.target.wants/facegated.service ] || failed "the unit is still enabled after dpkg -P"
[ -f /var/lib/facegate/journal.sqlite ] || failed "dpkg -P removed the journal"
for pkg in facegate facegate-models gstreamer1.0-facegate; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = not-installed ] || [ -z "$status" ] || failed "$pkg is $status after dpkg -P"
done
left=$(find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /tmp -o -path /var/lib/facegate \) -prune -o \
    \( -name '*facegate*' -o -name facegated.service \) -print | grep -v '^/var/lib/facegate$' || true)
[ -z "$left" ] || failed "dpkg -P left: $left"
ok "dpkg -P removed the conffile and the unit's enablement, left no other file, and kept /var/lib/facegate"
