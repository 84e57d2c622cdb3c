#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Check FaceGate's systemd and D-Bus integration files without installing anything under /etc or /usr:
#
#     scripts/check-systemd.sh
#
#   systemd/facegated.service    systemd-analyze verify on a copy whose ExecStart and ExecStopPost point at
#                                /bin/true (the real /usr/bin/facegated is not installed here); any message
#                                at all fails.
#                                Then the settings the gate relies on are checked to be present (and the
#                                ones that must not be there to be absent), and systemd-analyze security
#                                --offline gives the exposure score, which must stay at or below 2.0.
#   systemd/facegate.sysusers    systemd-sysusers --root=SCRATCH on a scratch root seeded like Debian (root,
#                                group video): user facegate with its home and no login, groups
#                                facegate-staff and gpio, facegate in gpio and video; a second run is a no-op.
#   systemd/facegate.tmpfiles    systemd-tmpfiles --root=SCRATCH --create on the same root: /var/lib/facegate
#                                and its gallery, 0750, owned by the facegate user and group just created.
#   systemd/org.facegate.Gate.conf (when present) well-formed XML with a <busconfig> root, then loaded by a
#                                throw-away dbus-daemon on a socket in the scratch directory.
#
# Prints one line per check; exits 1 if any check failed, 0 otherwise. Needs systemd 252 (systemd-analyze,
# systemd-sysusers, systemd-tmpfiles) and python3; dbus-daemon is optional. The tmpfiles check and the
# second sysusers run need root (chown inside the scratch root, reading its shadow files back) and are
# skipped otherwise.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UNIT=$ROOT/systemd/facegated.service
SYSUSERS=$ROOT/systemd/facegate.sysusers
TMPFILES=$ROOT/systemd/facegate.tmpfiles
POLICY=$ROOT/systemd/org.facegate.Gate.conf
EXEC_START='ExecStart=/usr/bin/facegated --config /etc/facegate/facegate.toml'
EXEC_STOP_POST='ExecStopPost=/usr/bin/facegated --config /etc/facegate/facegate.toml safe-state'
MAX_EXPOSURE=20            # systemd-analyze security --threshold is in tenths: 20 = 2.0

FAILED=0
ok()   { echo "ok    $*"; }
fail() { echo "FAIL  $*"; FAILED=1; }
skip() { echo "skip  $*"; }
indent() { sed 's/^/      | /'; }

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/facegate-check-systemd.XXXXXX") || { echo "cannot make a scratch directory" >&2; exit 1; }
DBUS_PID=
cleanup() {
    if [ -n "$DBUS_PID" ]; then kill "$DBUS_PID" 2>/dev/null; wait "$DBUS_PID" 2>/dev/null; fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

for tool in systemd-analyze systemd-sysusers systemd-tmpfiles python3; do
    command -v "$tool" >/dev/null || { fail "$tool not found (apt-get install systemd python3)"; exit 1; }
done
echo "checking with $(systemd-analyze --version | head -n1)"

# --- the unit -------------------------------------------------------------------------------------------
if [ ! -f "$UNIT" ]; then
    fail "$UNIT does not exist"
else
    mkdir -p "$SCRATCH/units"
    COPY=$SCRATCH/units/facegated.service
    n_exec=$(grep -c '^ExecStart=' "$UNIT")
    if [ "$n_exec" != 1 ] || ! grep -qxF "$EXEC_START" "$UNIT"; then
        fail "unit: expected exactly one line '$EXEC_START' (found $n_exec ExecStart= lines)"
    fi
    if ! grep -qxF "$EXEC_STOP_POST" "$UNIT"; then
        fail "unit: expected the line '$EXEC_STOP_POST' (a crashed service's relay released at once)"
    fi
    sed -e 's|^ExecStart=/usr/bin/facegated |ExecStart=/bin/true |' \
        -e 's|^ExecStopPost=/usr/bin/facegated |ExecStopPost=/bin/true |' "$UNIT" > "$COPY"

    # systemd-analyze verify reports unknown keys, bad values and the like as log messages and still
    # exits 0, so any output counts as a failure. SYSTEMD_UNIT_PATH keeps it to the copy plus the
    # host's units (a trailing ':' appends the default search path for dependencies such as dbus.socket).
    out=$(SYSTEMD_UNIT_PATH="$SCRATCH/units:" SYSTEMD_LOG_LEVEL=info \
          systemd-analyze verify --man=no "$COPY" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] || [ -n "$out" ]; then
        fail "unit: systemd-analyze verify (exit $rc):"; printf '%s\n' "$out" | indent
    else
        ok "unit: systemd-analyze verify facegated.service: no warnings"
    fi

    # What the gate relies on. A key given twice: systemd takes the last one (DeviceAllow= adds up).
    value() { grep -E "^$1=" "$UNIT" | tail -n1 | cut -d= -f2-; }
    missing=()
    for kv in Type=notify WatchdogSec=10 Restart=on-failure RestartSec=2 User=facegate Group=facegate \
              'SupplementaryGroups=gpio video' NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes \
              PrivateTmp=yes ReadWritePaths=/var/lib/facegate StateDirectory=facegate \
              ConfigurationDirectory=facegate DevicePolicy=closed ProtectKernelTunables=yes \
              ProtectKernelModules=yes ProtectControlGroups=yes RestrictAddressFamilies=AF_UNIX \
              LockPersonality=yes RestrictRealtime=yes SystemCallArchitectures=native \
              ProtectProc=invisible PrivateUsers=yes IPAddressDeny=any \
              MemoryDenyWriteExecute=yes SystemCallErrorNumber=EPERM \
              Environment=ORT_DYLIB_PATH=/usr/lib/facegate/libonnxruntime.so; do
        key=${kv%%=*}; want=${kv#*=}
        if [ "$key" = Environment ]; then
            grep -qxF "$kv" "$UNIT" || missing+=("$kv")
        elif [ "$(value "$key")" != "$want" ]; then
            missing+=("$kv")
        fi
    done
    for filter in 'SystemCallFilter=@system-service' 'SystemCallFilter=~@privileged @resources'; do
        grep -qxF "$filter" "$UNIT" || missing+=("$filter")
    done
    for dev in char-video4linux char-media char-dma_heap char-gpiochip 'char-\*gpiomem\*'; do
        grep -qE "^DeviceAllow=$dev rw$" "$UNIT" || missing+=("DeviceAllow=${dev//\\/} rw")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        fail "unit: settings missing or different:"; printf '%s\n' "${missing[@]}" | indent
    else
        ok "unit: notify + watchdog, restart, user/groups, sandbox, device allow list all present"
    fi
    # BusName= is for Type=dbus only; DeviceAllow= takes no globs in paths (/dev/video* would match nothing).
    bad=$(grep -nE '^(BusName=|DeviceAllow=/dev/[^ ]*[*?[])' "$UNIT")
    if [ -n "$bad" ]; then
        fail "unit: settings that must not be there:"; printf '%s\n' "$bad" | indent
    else
        ok "unit: no BusName=, no globbed /dev paths in DeviceAllow="
    fi

    out=$(systemd-analyze security --offline=yes --threshold=$MAX_EXPOSURE --no-pager "$COPY" 2>&1)
    rc=$?
    score=$(printf '%s\n' "$out" | grep -o 'Overall exposure level.*' | sed 's/ *[^ -~]*$//')
    if [ $rc -ne 0 ]; then
        fail "unit: systemd-analyze security: ${score:-no score} (must be at most ${MAX_EXPOSURE:0:1}.${MAX_EXPOSURE:1})"
        printf '%s\n' "$out" | grep -E '✗|rror' | indent
    else
        ok "unit: systemd-analyze security --offline: $score"
    fi
fi

# --- sysusers ---------------------------------------------------------------------------------------------
SYSROOT=$SCRATCH/root
mkdir -p "$SYSROOT/etc"
# Seeded like a fresh Debian: root, and the video group base-passwd creates (gid 44).
printf 'root:x:0:0:root:/root:/bin/bash\n' > "$SYSROOT/etc/passwd"
printf 'root:x:0:\nvideo:x:44:\n' > "$SYSROOT/etc/group"
USERS_OK=0
if [ ! -f "$SYSUSERS" ]; then
    fail "$SYSUSERS does not exist"
else
    out=$(systemd-sysusers --root="$SYSROOT" "$SYSUSERS" 2>&1)
    rc=$?
    noise=$(printf '%s\n' "$out" | grep -vE '^(Creating (group|user) .*|)$')
    if [ $rc -ne 0 ] || [ -n "$noise" ]; then
        fail "sysusers: systemd-sysusers --root (exit $rc):"; printf '%s\n' "$out" | indent
    else
        pw=$(grep '^facegate:' "$SYSROOT/etc/passwd")
        IFS=: read -r _ _ uid gid gecos home shell <<<"$pw"
        problems=()
        [ -n "$pw" ] || problems+=("no user facegate")
        [ "$home" = /var/lib/facegate ] || problems+=("home is '$home', not /var/lib/facegate")
        case "$shell" in */nologin|/bin/false) ;; *) problems+=("shell is '$shell', not nologin") ;; esac
        [ -n "$uid" ] && [ "$uid" -lt 1000 ] || problems+=("uid '$uid' is not a system uid")
        [ "$(awk -F: '$1=="facegate"{print $3}' "$SYSROOT/etc/group")" = "$gid" ] || problems+=("no group facegate with the user's gid $gid")
        grep -q '^facegate-staff:' "$SYSROOT/etc/group" || problems+=("no group facegate-staff")
        for g in gpio video; do
            awk -F: -v g="$g" '$1==g{n=split($4,m,",");for(i=1;i<=n;i++)if(m[i]=="facegate")f=1}END{exit !f}' \
                "$SYSROOT/etc/group" || problems+=("facegate is not in group $g")
        done
        if [ ${#problems[@]} -gt 0 ]; then
            fail "sysusers: wrong result:"; printf '%s\n' "${problems[@]}" | indent
            sed 's/^/passwd: /' "$SYSROOT/etc/passwd" | indent; sed 's/^/group: /' "$SYSROOT/etc/group" | indent
        else
            USERS_OK=1
            ok "sysusers: facegate (uid $uid, home $home, $shell) in gpio and video; groups facegate-staff, gpio"
        fi
        if [ "$(id -u)" != 0 ]; then
            skip "sysusers: second run needs root (it reads back the mode-0000 shadow files it wrote)"
        else
            out=$(systemd-sysusers --root="$SYSROOT" "$SYSUSERS" 2>&1)
            rc=$?
            if [ $rc -ne 0 ] || [ -n "$out" ]; then
                fail "sysusers: a second run is not a no-op (exit $rc):"; printf '%s\n' "$out" | indent
            else
                ok "sysusers: a second run changes nothing"
            fi
        fi
    fi
fi

# --- tmpfiles ---------------------------------------------------------------------------------------------
if [ ! -f "$TMPFILES" ]; then
    fail "$TMPFILES does not exist"
elif [ "$(id -u)" != 0 ]; then
    skip "tmpfiles: needs root to chown inside the scratch root"
elif [ $USERS_OK != 1 ]; then
    fail "tmpfiles: not checked, the sysusers check failed (the user facegate must exist first)"
else
    out=$(systemd-tmpfiles --root="$SYSROOT" --create "$TMPFILES" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] || [ -n "$out" ]; then
        fail "tmpfiles: systemd-tmpfiles --root --create (exit $rc):"; printf '%s\n' "$out" | indent
    else
        want_uid=$(awk -F: '$1=="facegate"{print $3}' "$SYSROOT/etc/passwd")
        want_gid=$(awk -F: '$1=="facegate"{print $3}' "$SYSROOT/etc/group")
        problems=()
        for d in /var/lib/facegate /var/lib/facegate/gallery; do
            if [ ! -d "$SYSROOT$d" ]; then problems+=("$d was not created"); continue; fi
            got=$(stat -c '%a %u %g' "$SYSROOT$d")
            [ "$got" = "750 $want_uid $want_gid" ] || problems+=("$d is mode/uid/gid '$got', want '750 $want_uid $want_gid'")
        done
        if [ ${#problems[@]} -gt 0 ]; then
            fail "tmpfiles: wrong result:"; printf '%s\n' "${problems[@]}" | indent
        else
            ok "tmpfiles: /var/lib/facegate and /var/lib/facegate/gallery created 0750 facegate:facegate"
        fi
        out=$(systemd-tmpfiles --root="$SYSROOT" --create "$TMPFILES" 2>&1)
        rc=$?
        if [ $rc -ne 0 ] || [ -n "$out" ]; then
            fail "tmpfiles: a second run is not clean (exit $rc):"; printf '%s\n' "$out" | indent
        else
            ok "tmpfiles: a second run is clean"
        fi
    fi
fi

# --- D-Bus system bus policy --------------------------------------------------------------------------------
if [ ! -f "$POLICY" ]; then
    skip "dbus policy: $POLICY not present (yet)"
else
    out=$(python3 - "$POLICY" 2>&1 <<'EOF'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except ET.ParseError as e:
    sys.exit(f"{sys.argv[1]}: {e}")
if root.tag != "busconfig":
    sys.exit(f"root element is <{root.tag}>, not <busconfig>")
EOF
)
    if [ $? -ne 0 ]; then
        fail "dbus policy: not well-formed:"; printf '%s\n' "$out" | indent
    else
        ok "dbus policy: well-formed XML, <busconfig> root"
        if ! command -v dbus-daemon >/dev/null; then
            skip "dbus policy: dbus-daemon not installed, not loaded"
        else
            # A throw-away bus that includes the policy: dbus-daemon refuses unknown elements and
            # attributes. Users and groups that do not exist on this machine are only warnings
            # (expected where sysusers has not run), so those lines are reported, not failed.
            # The only thing it listens on is a socket in the scratch directory.
            cat > "$SCRATCH/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$SCRATCH/bus.socket</listen>
  <auth>EXTERNAL</auth>
  <include>$POLICY</include>
</busconfig>
EOF
            dbus-daemon --config-file="$SCRATCH/bus.conf" --nofork --print-address=1 \
                >"$SCRATCH/bus.address" 2>"$SCRATCH/bus.log" &
            DBUS_PID=$!
            for _ in $(seq 50); do
                [ -s "$SCRATCH/bus.address" ] && break
                kill -0 "$DBUS_PID" 2>/dev/null || break
                sleep 0.1
            done
            started=0; [ -s "$SCRATCH/bus.address" ] && started=1
            kill "$DBUS_PID" 2>/dev/null; wait "$DBUS_PID" 2>/dev/null; DBUS_PID=
            # Also harmless: dbus-daemon started as root tries to raise its fd limit, which a container
            # may refuse.
            harmless='Unknown (username|group) |Failed to set fd limit'
            unknown=$(grep -E "$harmless" "$SCRATCH/bus.log" | sed -E 's/^dbus(-daemon)?\[[0-9]*\]: //')
            other=$(grep -vE "$harmless" "$SCRATCH/bus.log")
            if [ $started != 1 ] || [ -n "$other" ]; then
                fail "dbus policy: dbus-daemon did not accept it:"; cat "$SCRATCH/bus.log" | indent
            else
                ok "dbus policy: loaded by dbus-daemon"
                [ -z "$unknown" ] || { echo "      note: warnings about this machine, not the policy (facegate.sysusers creates the accounts):"; printf '%s\n' "$unknown" | indent; }
            fi
        fi
    fi
fi

if [ $FAILED -ne 0 ]; then
    echo "check-systemd: FAILED"
    exit 1
fi
echo "check-systemd: all checks passed"
