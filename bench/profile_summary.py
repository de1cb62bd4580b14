"""Summarise py-spy collapsed stacks (from `bench/run.py --profile DIR`): where the server's
time goes, as shares of all non-idle samples.

    .venv/bin/python bench/profile_summary.py DIR/postgres-code_flow-max.txt [--top 25]

"inclusive" counts a sample for every distinct function on its stack (what a call costs with
everything below it); "self" counts only the innermost frame. The buckets give one line per
kind of work (signing, password hashing, database, templates, Flask/authlib overhead).
"""
from __future__ import annotations

import argparse
import re
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")

# (bucket, predicate on "func (file)"), in priority order: a sample goes to the first bucket with a frame on its stack.
BUCKETS = [
    ("RSA/EC signing (cryptography)", lambda f: ("sign (" in f and "cryptography" in f)
     or ("sign (" in f and "joserfc/_rfc7518/rsa" in f) or "joserfc/_rfc7518/ec_key" in f and "sign" in f),
    ("argon2 (password hash)", lambda f: "argon2" in f),
    ("database driver (psycopg/sqlite3 execute, fetch, commit)", lambda f: "psycopg/" in f
     or ("sqlite3" in f and "sqlalchemy" not in f) or "do_execute (" in f or "do_commit (" in f
     or "do_ping (" in f or "do_rollback (" in f),
    ("SQLAlchemy ORM/Core (building, compiling, loading)", lambda f: "sqlalchemy/" in f),
    ("Jinja templates", lambda f: "jinja2/" in f or "render_template" in f),
    ("JOSE (joserfc/authlib jose, minus the signature)", lambda f: "joserfc/" in f or "authlib/jose" in f),
    ("authlib OAuth (minus the above)", lambda f: "authlib/" in f),
    ("idp code (minus the above)", lambda f: "/idp/" in f),
    ("Flask/Werkzeug/WTF request handling", lambda f: "flask/" in f or "werkzeug/" in f or "flask_wtf" in f
     or "flask_sqlalchemy" in f),
    ("logging", lambda f: "logging/" in f),
]


def parse(path: str):
    stacks = []
    with open(path) as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not line or " " not in line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                continue
            stacks.append((stack.split(";"), n))
    return stacks


def bucket_of(frames: list[str]) -> str:
    for name, test in BUCKETS:
        if any(test(f) for f in frames):
            return name
    return "other (server, interpreter, stdlib)"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("files", nargs="+")
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args()
    for path in args.files:
        stacks = parse(path)
        total = sum(n for _, n in stacks) or 1
        inclusive, self_time, buckets = Counter(), Counter(), Counter()
        for frames, n in stacks:
            names = {FRAME.sub(lambda m: f"{m['func']} ({m['file']})", f) for f in frames}
            for name in names:
                inclusive[name] += n
            self_time[FRAME.sub(lambda m: f"{m['func']} ({m['file']})", frames[-1])] += n
            # ordered innermost-first so the most specific bucket wins
            buckets[bucket_of(list(reversed(frames)))] += n
        print(f"== {path}: {total} samples")
        print("-- buckets")
        for name, n in buckets.most_common():
            print(f"{100 * n / total:6.1f}%  {name}")
        print(f"-- top {args.top} inclusive")
        for name, n in inclusive.most_common(args.top):
            print(f"{100 * n / total:6.1f}%  {name}")
        print(f"-- top {args.top} self")
        for name, n in self_time.most_common(args.top):
            print(f"{100 * n / total:6.1f}%  {name}")


if __name__ == "__main__":
    main()
