#!/usr/bin/env python3
"""The declared minimum Rust version (`rust-version` in Cargo.toml) holds for the build.

This machine and CI have one toolchain and cannot fetch another, so the MSRV is checked
in two halves that together cover what a build on it would:
  * ward's own code: clippy's `incompatible_msrv` lint (on by default; CI denies warnings)
    flags every standard-library API newer than `rust-version`;
  * the dependencies: this script fails when a crate in the Linux build declares a
    `rust-version` newer than the workspace's (Cargo.lock pins it; scripts/update-deps.sh
    prefers versions that fit).

    scripts/check-msrv.py
"""
import json
import subprocess
import sys


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1",
         "--filter-platform", "x86_64-unknown-linux-gnu"],
        check=True, capture_output=True, text=True,
    ).stdout
)
members = set(meta["workspace_members"])
declared = {p["rust_version"] for p in meta["packages"] if p["id"] in members}
if len(declared) != 1 or None in declared:
    sys.exit(f"error: the workspace's crates declare rust-version {sorted(map(str, declared))}; "
             "they must all inherit the workspace's")
msrv = declared.pop()
used = {node["id"] for node in meta["resolve"]["nodes"]}
newer = sorted(
    f"{p['name']} {p['version']} (rust-version {p['rust_version']})"
    for p in meta["packages"]
    if p["id"] in used and p["id"] not in members
    and p.get("rust_version") and version(p["rust_version"]) > version(msrv)
)
if newer:
    sys.exit(f"error: these dependencies need a newer Rust than rust-version = {msrv}:\n  "
             + "\n  ".join(newer))
print(f"ok: every crate in the build fits rust-version = {msrv} "
      f"({len(used) - len(members)} dependencies)")
