#!/usr/bin/env python3
"""Checks that Cargo.toml's rust-version is the real minimum: the highest
rust-version among the locked packages our crate builds (normal dependencies,
every feature on, Linux targets). Prints one line and fails when they differ.

Usage: scripts/check-msrv.py [--print]   (--print: show the top packages)
"""
import json
import subprocess
import sys


def version_key(v):
    """"1.88" and "1.88.0" are the same version."""
    parts = [int(p) for p in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features",
             "--filter-platform", "x86_64-unknown-linux-gnu"],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    root = meta["resolve"]["root"]
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    # Walk normal dependencies (and build scripts' build dependencies, which
    # are compiled too); dev-dependencies are only for our tests.
    seen, todo = set(), [root]
    while todo:
        node = nodes[todo.pop()]
        for dep in node["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if node["id"] == root and kinds <= {"dev"}:
                continue
            if dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])
    needs = sorted(
        ((packages[i]["rust_version"], packages[i]["name"], packages[i]["version"])
         for i in seen if packages[i].get("rust_version")),
        key=lambda t: version_key(t[0]), reverse=True,
    )
    floor = needs[0][0]
    ours = packages[root].get("rust_version") or "unset"
    if "--print" in sys.argv:
        for rv, name, ver in needs[:15]:
            print(f"{rv:8} {name} {ver}")
    if ours == "unset" or version_key(ours) != version_key(floor):
        top = [f"{n} {v}" for rv, n, v in needs if version_key(rv) == version_key(floor)]
        print(
            f"check-msrv: Cargo.toml says rust-version = \"{ours}\", but the locked dependencies "
            f"need Rust {floor} ({', '.join(top[:3])}); set rust-version and README.md's Needs line to it",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
