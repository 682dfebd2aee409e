#!/usr/bin/env python3
"""Candidate tests for compat/tests.txt, with the server configuration each needs.

    compat/candidates.py 'ps*' 'sp*' ctype_utf8 ... > /tmp/candidates.txt
    compat/run.sh --only direct --list /tmp/candidates.txt   # keep the ones that pass

Arguments are shell patterns over the `main` suite's test names. For each matching test it
prints "main.<name> <configuration>": the include files it sources (recursively) that come
with an .opt file, joined by "+", as compat/run.sh expects (mtr would start the server with
those options for the test); "default" when there are none.

A test's own .opt or -master.opt file is named too, as main/<name>, after the include
files. Left out, with the reason on stderr: tests that stop or restart the server (in
--extern mode they would take the server away from every later test), and tests whose own
options need what compat/run.sh cannot give (--timezone, for which mtr sets TZ instead).
"""

import fnmatch
import os
import re
import sys

MTR = os.environ.get("GONEAWAY_MTR_DIR", "/usr/share/mysql/mysql-test")
STOPS = re.compile(
    r"restart_mysqld|shutdown_mysqld|kill_mysqld|restart_abort|shutdown_server|send_shutdown"
    r"|kill_server|crash_mysqld|start_mysqld|^\s*shutdown\s*;|mysqladmin.*shutdown",
    re.I | re.M,
)
SOURCE = re.compile(r"^\s*-{0,2}\s*source\s+(\S+?);?\s*$", re.I | re.M)
# Include files that only mention a restart in comments or in branches for other setups.
HARMLESS = {"wait_until_disconnected.inc", "search_pattern_in_file.inc", "wait_condition.inc"}

memo = {}


def scan(path):
    """(reason the test must be left out or None, set of include names with .opt files)."""
    if path in memo:
        return memo[path]
    memo[path] = (None, set())  # cycles
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return memo[path]
    stop = None
    m = STOPS.search(text)
    if m and os.path.basename(path) not in HARMLESS:
        stop = f"{os.path.relpath(path, MTR)}: {m.group(0).strip()}"
    opts = set()
    for src in SOURCE.findall(text):
        if "$" in src:
            continue
        for cand in (os.path.join(MTR, src), os.path.join(os.path.dirname(path), src)):
            if os.path.exists(cand):
                base = os.path.splitext(cand)[0]
                if cand.endswith(".inc") and (
                    os.path.exists(base + ".opt") or os.path.exists(base + "-master.opt")
                ):
                    opts.add(os.path.basename(base))
                sub_stop, sub_opts = scan(cand)
                stop = stop or sub_stop
                opts |= sub_opts
                break
    memo[path] = (stop, opts)
    return memo[path]


def main(patterns):
    main_dir = os.path.join(MTR, "main")
    names = sorted(f[:-5] for f in os.listdir(main_dir) if f.endswith(".test"))
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    for name in chosen:
        stop, opts = scan(os.path.join(main_dir, name + ".test"))
        if stop:
            print(f"left out main.{name}: stops the server ({stop})", file=sys.stderr)
            continue
        config = sorted(opts)
        own = [f for f in (".opt", "-master.opt") if os.path.exists(os.path.join(main_dir, name + f))]
        if own:
            text = " ".join(open(os.path.join(main_dir, name + f), errors="replace").read() for f in own)
            if "--timezone" in text:
                print(f"left out main.{name}: its {name}{own[0]} uses --timezone (mtr sets TZ for it)", file=sys.stderr)
                continue
            config.append(f"main/{name}")
        print(f"main.{name} {'+'.join(config) or 'default'}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
