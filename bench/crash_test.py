#!/usr/bin/env python3
"""Crash test of `strata generate --resume`: kills a job again and again and checks that, resumed,
it answers every request exactly once with the texts of an uninterrupted run.

Each trial starts a fresh output (.jsonl or .jsonl.zst, alternately) and interrupts the job one
to four times before a last, uninterrupted --resume, choosing each time among
  * SIGKILL at a random moment of the run,
  * a crash point compiled into strata (STRATA_CRASH_AT=NAME:N): right after a record's write,
    during a torn write (half a record on disk), while the job file or a rewritten output is
    being replaced, and during the final summary,
  * SIGINT at a random moment (the job must stop at a record boundary with exit code 130).
Then every custom_id must appear exactly once and every record must equal the reference record
(greedy decoding; the "created" time aside). With --shards N, each trial runs the job as N shards
(`generate --shard I/N`), interrupts and resumes each shard as above, merges them with `strata
merge` (killed at a random moment now and then, and run again) and checks the merged output the
same way. Results: a JSON line per trial on --jsonl, and a Markdown summary on stdout. Python 3
standard library only (libzstd through ctypes).

  bench/crash_test.py --strata build/tools/strata --model models/demo --kills 200 [--shards 3]
"""

import argparse
import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

POINTS = ["record_written", "torn_write", "atomic_write", "rewrite", "summary"]


def zstd_records(data):
    """The lines of a file of concatenated zstd frames (each one a whole record)."""
    lib = ctypes.CDLL("libzstd.so.1")
    lib.ZSTD_findFrameCompressedSize.restype = ctypes.c_size_t
    lib.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
    lib.ZSTD_decompress.restype = ctypes.c_size_t
    lib.ZSTD_isError.restype = ctypes.c_uint
    out, pos = b"", 0
    while pos < len(data):
        chunk = data[pos:]
        n = lib.ZSTD_findFrameCompressedSize(chunk, ctypes.c_size_t(len(chunk)))
        if lib.ZSTD_isError(n):
            raise ValueError("torn or foreign zstd data at byte %d" % pos)
        size = lib.ZSTD_getFrameContentSize(chunk, ctypes.c_size_t(n))
        buf = ctypes.create_string_buffer(size)
        d = lib.ZSTD_decompress(buf, ctypes.c_size_t(size), chunk, ctypes.c_size_t(n))
        if lib.ZSTD_isError(d):
            raise ValueError("damaged zstd frame at byte %d" % pos)
        out += buf.raw[:d]
        pos += n
    return out


def read_records(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".zst"):
        data = zstd_records(data)
    if data and not data.endswith(b"\n"):
        raise ValueError("%s ends inside a record" % path)
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def read_records_lenient(path):
    """The intact records of an output that may end in a torn record."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith(".zst"):
            return []  # only used to aim the next kill; zstd outputs are aimed at the whole run
        return data[: data.rfind(b"\n") + 1].splitlines()
    except OSError:
        return []


def comparable(record):
    r = json.loads(json.dumps(record))
    if isinstance(r.get("response"), dict):
        r["response"]["body"].pop("created", None)
    return json.dumps(r, sort_keys=True)


def write_input(path, n, broken=True):
    prompts = ["In the beginning", "And the LORD said unto Moses", "You will", "A friend is",
               "Blessed are the", "Fortune favours", "The kingdom of heaven is like", "Tomorrow"]
    with open(path, "w") as f:
        for i in range(n):
            if i % 5 == 4:
                body = {"messages": [{"role": "user", "content": prompts[i % 8]}], "max_tokens": 8 + i % 24}
                f.write(json.dumps({"custom_id": "c%d" % i, "method": "POST", "url": "/v1/chat/completions",
                                    "body": body}) + "\n")
            else:
                f.write(json.dumps({"custom_id": "c%d" % i, "prompt": prompts[i % 8], "max_tokens": 8 + i % 40}) + "\n")
        # Past the demo model's context of 1024 only with the job's default max_tokens (256): an error
        # line of scope "job", which every resume removes and writes again (the output's rewrite).
        f.write(json.dumps({"custom_id": "long", "prompt": "And the LORD said unto Moses, " * 115}) + "\n")
        if broken:  # an error line without a readable custom_id (a sharded job refuses such an input)
            f.write('{"custom_id": "broken", "prompt": \n')
        f.write(json.dumps({"custom_id": "c0", "prompt": "a duplicate"}) + "\n")


class Runner:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.input = os.path.join(work, "in.jsonl")

    def command(self, out, resume, shard=None):
        cmd = [self.args.strata, "generate", "--model", self.args.model, "--input", self.input, "--output", out,
               "--temperature", "0", "--batch-size", str(self.args.batch_size), "--window", "16",
               "--max-tokens", "256",
               "--threads", str(self.args.threads), "--quiet"]
        if shard is not None:
            cmd += ["--shard", "%d/%d" % shard]
        return cmd + (["--resume"] if resume else [])

    def run(self, out, resume, env=None, kill_after=None, sig=signal.SIGKILL, shard=None, cmd=None):
        e = dict(os.environ)
        e.update(env or {})
        with open(os.path.join(self.work, "log.txt"), "ab") as log:
            p = subprocess.Popen(cmd or self.command(out, resume, shard), env=e, stdout=log, stderr=log)
            if kill_after is not None:
                try:
                    p.wait(timeout=kill_after)
                except subprocess.TimeoutExpired:
                    p.send_signal(sig)
            return p.wait(timeout=600)


def shard_path(out, i, n):
    """Where `generate --shard I/N --output OUT` writes: OUT.shard-I-of-N, before a .zst suffix."""
    suffix = ".shard-%d-of-%d" % (i, n)
    return out[:-4] + suffix + ".zst" if out.endswith(".zst") else out + suffix


def interrupt(runner, rng, out, written, duration, args, events, shard=None):
    """Runs the job (or one shard of it: its output is `written`) one to four times, each run
    interrupted; returns the interruptions, or a failure's reason."""
    kills = 0
    for step in range(rng.randint(1, 4)):
        resume = os.path.exists(written)
        how = rng.choice(["kill", "kill", "point", "sigint"])
        if how == "point":
            point = rng.choice(POINTS)
            n = 1 if point in ("atomic_write", "rewrite", "summary") else rng.randint(1, args.requests)
            code = runner.run(out, resume, env={"STRATA_CRASH_AT": "%s:%d" % (point, n)}, shard=shard)
            events.append("%s:%d->%d" % (point, n, code))
            kills += code == 128 + signal.SIGKILL or code == -signal.SIGKILL
            if code not in (0, -signal.SIGKILL):
                return kills, "crash point run exited %d" % code
        else:
            # Within what is left of the job, so that most interruptions land mid-run.
            done = len(read_records_lenient(written)) if resume else 0
            left = max(0.1, 1.0 - done / args.expected)
            at = rng.uniform(0.02, 0.15 + duration * left)
            sig = signal.SIGINT if how == "sigint" else signal.SIGKILL
            code = runner.run(out, resume, kill_after=at, sig=sig, shard=shard)
            events.append("%s@%.2fs->%d" % (how, at, code))
            stopped = code == -signal.SIGKILL or (how == "sigint" and code == 130)
            kills += stopped
            if code not in (0, 130, -signal.SIGKILL, -signal.SIGINT):
                return kills, "run exited %d" % code
            if how == "sigint" and code == 130:
                records = read_records(written) if os.path.exists(written) else []  # must end on a record boundary
                events[-1] += "(%d records)" % len(records)
    code = runner.run(out, os.path.exists(written), shard=shard)
    if code != 0:
        return kills, "final resume exited %d" % code
    return kills, None


def merge(runner, rng, out, n, events):
    """`strata merge` of the N shards into `out`, killed at a random moment now and then."""
    kills = 0
    cmd = [runner.args.strata, "merge", "--input", runner.input, "--output", out, "--shards", str(n), "--quiet"]
    for _ in range(rng.randint(0, 2)):
        at = rng.uniform(0.0, 0.3)
        code = runner.run(out, False, kill_after=at, cmd=cmd + (["--overwrite"] if os.path.exists(out) else []))
        events.append("merge kill@%.2fs->%d" % (at, code))
        kills += code == -signal.SIGKILL
        if os.path.exists(out):
            read_records(out)  # a merge leaves the whole output or none: never a torn one
    code = runner.run(out, False, cmd=cmd + (["--overwrite"] if os.path.exists(out) else []))
    return kills, None if code == 0 else "merge exited %d" % code


def trial(runner, reference, rng, index, duration, args):
    ext = ".jsonl.zst" if index % 2 else ".jsonl"
    out = os.path.join(runner.work, "out%d%s" % (index, ext))
    kills, events = 0, []
    if args.shards:
        for i in range(args.shards):
            k, why = interrupt(runner, rng, out, shard_path(out, i, args.shards), duration / args.shards, args, events,
                               shard=(i, args.shards))
            kills += k
            if why:
                return {"ok": False, "why": "shard %d: %s" % (i, why), "events": events, "kills": kills}
        k, why = merge(runner, rng, out, args.shards, events)
    else:
        k, why = interrupt(runner, rng, out, out, duration, args, events)
    kills += k
    if why:
        return {"ok": False, "why": why, "events": events, "kills": kills}
    got = read_records(out)
    seen = {}
    for r in got:
        seen[r["id"]] = seen.get(r["id"], 0) + 1
    dup = [k for k, v in seen.items() if v != 1]
    missing = [k for k in reference if k not in seen]
    differ = [r["id"] for r in got if r["id"] in reference and comparable(r) != reference[r["id"]]]
    ok = not dup and not missing and not differ and len(got) == len(reference)
    return {"ok": ok, "ext": ext, "kills": kills, "events": events, "duplicates": dup[:5], "missing": missing[:5],
            "differ": differ[:5]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strata", default="build/tools/strata")
    ap.add_argument("--model", default="models/demo")
    ap.add_argument("--kills", type=int, default=200, help="stop after this many interruptions")
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shards", type=int, default=0, help="run each trial's job as this many shards, then merge")
    ap.add_argument("--jsonl", help="write one JSON line per trial here")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="strata-crash-")
    runner = Runner(args, work)
    write_input(runner.input, args.requests, broken=not args.shards)
    ref_out = os.path.join(work, "reference.jsonl")
    t0 = time.monotonic()
    if runner.run(ref_out, False) != 0:
        sys.exit("the uninterrupted run failed; see %s/log.txt" % work)
    duration = time.monotonic() - t0
    reference = {r["id"]: comparable(r) for r in read_records(ref_out)}
    args.expected = len(reference)
    trials, kills, failures = 0, 0, 0
    log = open(args.jsonl, "w") if args.jsonl else None
    start = time.monotonic()
    while kills < args.kills:
        res = trial(runner, reference, rng, trials, duration, args)
        res["trial"] = trials
        trials += 1
        kills += res.get("kills", 0)
        failures += not res["ok"]
        if log:
            log.write(json.dumps(res) + "\n")
            log.flush()
        if not res["ok"]:
            print("FAILED trial %d: %s" % (res["trial"], json.dumps(res)), file=sys.stderr)
    wall = time.monotonic() - start
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print("| what | figure |\n|---|---|")
    print("| trials (each: 1-4 interruptions, then a final --resume) | %d |" % trials)
    print("| interruptions (SIGKILL, crash points, SIGINT) | %d |" % kills)
    print("| trials with a request missing, duplicated or different | %d |" % failures)
    what = "a duplicate id" if args.shards else "a broken line and a duplicate id"
    print("| requests per job (with %s) | %d |" % (what, len(reference)))
    if args.shards:
        print("| shards per job (each interrupted and resumed, then merged) | %d |" % args.shards)
    print("| uninterrupted run | %.2f s |" % duration)
    print("| wall time | %.0f s |" % wall)
    print("| commit | %s |" % commit)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
