#!/usr/bin/env python3
"""Collects the demo model's training text from Debian packages and splits it.

Sources (install with: apt-get install bible-kjv fortunes):
  - the King James Bible, as dumped by the `bible` program of bible-kjv/bible-kjv-text
    (public domain text; verse references stripped), one verse per document;
  - the English fortune cookie files of the `fortunes` package (/usr/share/games/fortunes,
    documents separated by '%' lines; the offensive set is a separate package and not used).

Writes OUT/train.txt and OUT/valid.txt: documents separated by a line holding only '\\x1e'
(record separator), shuffled with a fixed seed, 5% held out for validation.
Usage: python3 tools/train/prepare_data.py OUT_DIR
"""
import os
import random
import re
import subprocess
import sys

FORTUNE_DIR = "/usr/share/games/fortunes"
SEPARATOR = "\x1e"


def bible_verses():
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        m = re.match(r"^\S+\d+:\d+\s+(.*)$", line)
        if m and m.group(1).strip():
            yield m.group(1).strip()


def fortunes():
    for name in sorted(os.listdir(FORTUNE_DIR)):
        path = os.path.join(FORTUNE_DIR, name)
        if name.endswith((".dat", ".u8")) or os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for doc in re.split(r"^%$", f.read(), flags=re.M):
                doc = doc.strip("\n")
                if doc.strip():
                    yield doc


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    docs = list(bible_verses()) + list(fortunes())
    random.Random(1234).shuffle(docs)
    n_valid = len(docs) // 20
    for name, part in (("valid.txt", docs[:n_valid]), ("train.txt", docs[n_valid:])):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(("\n" + SEPARATOR + "\n").join(part))
    print(f"{len(docs)} documents: {len(docs) - n_valid} train, {n_valid} valid; "
          f"{sum(map(len, docs)) / 1e6:.1f} M characters")


if __name__ == "__main__":
    main()
