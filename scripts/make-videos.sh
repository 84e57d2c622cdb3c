#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Make FaceGate's test videos from the test photos, with stock GStreamer elements only.
#
#     scripts/make-videos.sh PHOTO_DIR OUT_DIR [NAME...]
#
# NAME is one of the videos below; without any, the first two (what `make setup` makes).
# No package ships a real video with faces, so each "walk-up" is one photo composited onto a
# dark grey 640x480 scene: 0.5 s of empty scene, then the photo appears with its face about
# 120 px high and "approaches" in 0.3 s steps (drifting slightly sideways) up to 300 px, stays
# there 1.4 s, and leaves.  The face is on screen for one continuous interval per walk-up, so a
# tracker keeps one id.  Output: MJPEG in AVI, 640x480, 30 fps, I420, plus a <name>.timeline.json
# beside each video giving, per walk-up, the photo and the first/last frame the face is shown
# and its face-box height per frame range (ground truth for tests).
#
#   walkup_person_b.avi  one walk-up of person_b_2.jpg (117 frames, 3.9 s)
#   demo_walkups.avi     person_a_2, impostor_2, person_b_2, biden, obama2, person_a_2 again,
#                        obama2 again, one after another (729 frames, 24.3 s)
#   soak_walkups.avi     only when asked for (about 780 MB; `facegatectl bench latency` makes it):
#                        the demo's seven walk-ups 26 times, round r rotated by 3r places so people
#                        come in a varying order; the same person returns after 2 walk-ups (6.8 s)
#                        at the soonest (182 walk-ups, 18579 frames, 10 min 19 s)
#
# Each video is written to a temporary name, decoded back (gst-launch-1.0 ... decodebin !
# fakesink) to check its frame count and that every frame's timestamp is i/30 s, and only then
# renamed into place.  A gst-launch pipeline holds every branch of its walk-ups at once (a decoded
# photo and a thread each), so a long video is rendered $CHUNK walk-ups at a time as JPEG frames in
# multipart files and these are joined into one AVI without re-encoding.  Any failure: one line on
# stderr and exit 1.
set -euo pipefail

die() { echo "make-videos: error: $*" >&2; exit 1; }

[ $# -ge 2 ] || { echo "usage: $0 PHOTO_DIR OUT_DIR [walkup_person_b|demo_walkups|soak_walkups...]" >&2; exit 2; }
PHOTOS=$1
OUT=$2
shift 2
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(walkup_person_b demo_walkups)
[ -d "$PHOTOS" ] || die "photo directory $PHOTOS does not exist"
command -v gst-launch-1.0 >/dev/null || die "gst-launch-1.0 not found (apt-get install gstreamer1.0-tools)"
for el in filesrc jpegdec videoconvert videoscale videobox imagefreeze videotestsrc compositor concat jpegenc avimux avidemux decodebin fakesink filesink multipartmux multipartdemux splitfilesrc; do
    gst-inspect-1.0 --exists "$el" || die "GStreamer element $el is missing (gstreamer1.0-plugins-base / -good)"
done
mkdir -p "$OUT" || die "cannot create $OUT"

W=640
H=480
FPS=30
GAP=15          # frames of empty scene before each walk-up (and once at the end): 0.5 s
STEP=9          # frames per approach step: 0.3 s
HOLD=42         # frames at the final size: 1.4 s
SIZES=(120 156 192 228 264 300)   # face-box height per step; the last one is held
CY=230          # face centre height in the frame
CHUNK=7         # walk-ups per gst-launch-1.0 pipeline (the demo is one)

# Face box (x y w h, from OpenCV's FaceDetectorYN with YuNet 2023mar) and image size (w h) of each
# photo, for the exact files pinned in models/manifest.toml.  A photo not listed here is refused.
face_geometry() {
    case "$1" in
        biden.jpg)          echo "426 175 290 403 970 2204" ;;
        impostor_1.jpg)     echo "220 162 245 339 682 785" ;;
        impostor_2.jpg)     echo "236 188 280 391 747 900" ;;
        obama.jpg)          echo "369 91 243 331 910 1137" ;;
        obama2.jpg)         echo "202 229 275 405 626 1200" ;;
        obama3.jpg)         echo "644 274 265 344 1434 2333" ;;
        person_a_1.jpg)     echo "64 47 74 105 204 244" ;;
        person_a_2.jpg)     echo "203 168 315 414 722 899" ;;
        person_b_1.jpg)     echo "216 152 287 387 716 900" ;;
        person_b_2.jpg)     echo "207 134 285 396 689 900" ;;
        *) return 1 ;;
    esac
}

CAPS_AYUV="video/x-raw,format=AYUV,width=$W,height=$H,pixel-aspect-ratio=1/1"

# One concat input: N fully transparent frames (the empty scene shows the background through).
empty_branch() { # N
    printf ' videotestsrc pattern=solid-color foreground-color=0x00000000 num-buffers=%d ! %s,framerate=%d/1 ! k.' \
        "$1" "$CAPS_AYUV" "$FPS"
}

# One concat input: PHOTO scaled so its face box is FACE_H px high, centred at (CX, CY), shown for N frames.
face_branch() { # PHOTO FACE_H CX N
    local photo=$1 fh_target=$2 cx=$3 n=$4 geo
    geo=$(face_geometry "$photo") || die "no face geometry for $photo (only the photos in models/manifest.toml are known)"
    # shellcheck disable=SC2086
    read -r sw sh left right top bottom < <(awk -v t="$fh_target" -v cx="$cx" -v cy="$CY" -v W="$W" -v H="$H" \
        -v g="$geo" 'BEGIN { split(g, a, " "); s = t / a[4];
            sw = int(a[5] * s + 0.5); sh = int(a[6] * s + 0.5);
            ox = int(cx - (a[1] + a[3] / 2) * s + 0.5); oy = int(cy - (a[2] + a[4] / 2) * s + 0.5);
            print sw, sh, -ox, ox + sw - W, -oy, oy + sh - H }')
    printf ' filesrc location="%s" ! jpegdec ! videoconvert ! video/x-raw,format=AYUV ! videoscale ! video/x-raw,width=%d,height=%d,pixel-aspect-ratio=1/1 ! videobox left=%d right=%d top=%d bottom=%d border-alpha=0 ! %s ! imagefreeze num-buffers=%d ! video/x-raw,framerate=%d/1 ! k.' \
        "$PHOTOS/$photo" "$sw" "$sh" "$left" "$right" "$top" "$bottom" "$CAPS_AYUV" "$n" "$FPS"
}

# render FILE FRAMES MUX BRANCHES : one pipeline: the scene with the concat of BRANCHES (FRAMES
# frames in all) over it, JPEG-encoded and muxed by MUX (avimux, or multipartmux for a part).
render() {
    local file=$1 frames=$2 mux=$3 branches=$4 log="$1.log"
    rm -f "$file"
    # shellcheck disable=SC2086
    if ! eval gst-launch-1.0 -q \
        compositor name=c ! videoconvert ! "video/x-raw,format=I420,width=$W,height=$H,framerate=$FPS/1,pixel-aspect-ratio=1/1" \
            ! jpegenc quality=90 ! $mux ! filesink location="\"$file\"" \
        videotestsrc pattern=solid-color foreground-color=0xff404040 num-buffers=$frames \
            ! "$CAPS_AYUV,framerate=$FPS/1" ! c.sink_0 \
        concat name=k ! c.sink_1 \
        "$branches" >"$log" 2>&1; then
        rm -f "$file"
        die "gst-launch-1.0 failed making $(basename "$file"): $(grep -m1 -E 'ERROR|WARNING' "$log" || tail -n1 "$log")"
    fi
    rm -f "$log"
}

# make_video NAME PHOTO... : one walk-up per photo, then a final gap.
make_video() {
    local name=$1; shift
    local branches="" frame=0 walk=0 json_walkups="" photo i n cx dir first ranges
    local parts="$OUT/.$name.parts" nparts=0 part_frames=0
    rm -rf "$parts"
    for photo in "$@"; do
        [ -f "$PHOTOS/$photo" ] || die "missing photo $PHOTOS/$photo (run scripts/fetch-assets.py)"
        if [ "$walk" -gt 0 ] && [ $((walk % CHUNK)) -eq 0 ]; then
            mkdir -p "$parts" || die "cannot create $parts"
            render "$parts/$(printf %05d "$nparts").mjpg" "$part_frames" multipartmux "$branches"
            nparts=$((nparts + 1)) branches="" part_frames=0
        fi
        branches+=$(empty_branch "$GAP")
        frame=$((frame + GAP))
        first=$frame
        ranges=""
        # Alternate the sideways drift per walk-up: 296 -> 336 or 344 -> 304.
        if [ $((walk % 2)) -eq 0 ]; then dir=8; cx=296; else dir=-8; cx=344; fi
        for i in "${!SIZES[@]}"; do
            n=$STEP
            [ "$i" -eq $((${#SIZES[@]} - 1)) ] && n=$HOLD
            branches+=$(face_branch "$photo" "${SIZES[$i]}" "$cx" "$n")
            ranges+="${ranges:+, }{\"first_frame\": $frame, \"last_frame\": $((frame + n - 1)), \"face_height\": ${SIZES[$i]}, \"face_centre\": [$cx, $CY]}"
            frame=$((frame + n))
            cx=$((cx + dir))
        done
        part_frames=$((part_frames + frame - first + GAP))
        json_walkups+="${json_walkups:+,
    }{\"photo\": \"$photo\", \"first_frame\": $first, \"last_frame\": $((frame - 1)), \"steps\": [$ranges]}"
        walk=$((walk + 1))
    done
    branches+=$(empty_branch "$GAP")
    frame=$((frame + GAP))
    part_frames=$((part_frames + GAP))
    local total=$frame tmp="$OUT/.$name.tmp.avi"

    if [ "$nparts" -eq 0 ]; then
        render "$tmp" "$total" avimux "$branches"
    else
        render "$parts/$(printf %05d "$nparts").mjpg" "$part_frames" multipartmux "$branches"
        # splitfilesrc reads the parts in name order as one stream; the JPEG frames go into the AVI as they are.
        rm -f "$tmp"
        if ! gst-launch-1.0 -q splitfilesrc location="$parts/*.mjpg" ! multipartdemux single-stream=true \
            ! "image/jpeg,width=$W,height=$H,framerate=$FPS/1" ! avimux ! filesink location="$tmp" >"$parts/join.log" 2>&1; then
            rm -f "$tmp"
            die "gst-launch-1.0 failed joining the parts of $name.avi: $(grep -m1 -E 'ERROR|WARNING' "$parts/join.log" || tail -n1 "$parts/join.log")"
        fi
        rm -rf "$parts"
    fi

    # Decode it back: count frames and check every timestamp is frame/30 s (no gaps at the joins).
    local check
    check=$(gst-launch-1.0 -v filesrc location="$tmp" ! decodebin ! fakesink silent=false sync=false 2>&1 |
        awk -v fps="$FPS" -v want="$total" '
            /last-message = chain/ && match($0, /pts: [0-9]+:[0-9]+:[0-9]+\.[0-9]+/) {
                split(substr($0, RSTART + 5, RLENGTH - 5), t, ":"); ns = (t[1] * 3600 + t[2] * 60 + t[3]) * 1e9;
                exp_ns = n * 1e9 / fps; d = ns - exp_ns; if (d < 0) d = -d; if (d > 1e6 && bad == "") bad = n;
                n++ }
            END { if (n != want) { printf "decoded %d frames, expected %d", n, want; exit 1 }
                  if (bad != "") { printf "frame %d has timestamp off its slot of 1/%d s", bad, fps; exit 1 }
                  printf "%d frames, %.3f s, timestamps continuous", n, n / fps }') ||
        { rm -f "$tmp"; die "$name.avi: $check"; }

    cat >"$OUT/.$name.timeline.json" <<EOF
{
  "video": "$name.avi",
  "width": $W, "height": $H, "fps": $FPS, "frames": $total,
  "background": "solid dark grey (0x404040); face box = YuNet's box of the photo, scaled",
  "walkups": [
    $json_walkups
  ]
}
EOF
    mv -f "$OUT/.$name.timeline.json" "$OUT/$name.timeline.json"
    mv -f "$tmp" "$OUT/$name.avi"
    echo "make-videos: $OUT/$name.avi: $check"
}

DEMO=(person_a_2.jpg impostor_2.jpg person_b_2.jpg biden.jpg obama2.jpg person_a_2.jpg obama2.jpg)

# The soak's walk-ups: 26 rounds of the demo's, round r rotated by 3r places.
soak_photos() {
    local r k
    for r in $(seq 0 25); do
        k=$((r * 3 % ${#DEMO[@]}))
        printf '%s\n' "${DEMO[@]:k}" "${DEMO[@]:0:k}"
    done
}

for name in "${NAMES[@]}"; do
    case $name in
        walkup_person_b) make_video walkup_person_b person_b_2.jpg ;;
        demo_walkups) make_video demo_walkups "${DEMO[@]}" ;;
        soak_walkups) mapfile -t soak < <(soak_photos); make_video soak_walkups "${soak[@]}" ;;
        *) die "unknown video $name (known: walkup_person_b, demo_walkups, soak_walkups)" ;;
    esac
done
