"""What libmagic alone says about each corpus file, against what the daemon decides.

    python bench/media_corpus.py [--protocol v1-presigned]

"libmagic alone" is libmagic's MIME type for the first 64 KiB (what the sniffing used to be)
with the decision that made (taken if it is one of the five default types), and its
description; "decision" is the daemon's verdict with the
default folder types and the given upload protocol.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import magic

from watcher.config import FolderConfig
from watcher.config.mediatypes import DEFAULT_TYPES, PROTOCOL_TYPES, canonical_type
from watcher.intake import admission as gate
from watcher.intake.sniff import SNIFF_BYTES, sniff_path

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "media" / "corpus"
NOT_MEDIA = {".md", ".sh"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="v1-presigned", choices=sorted(PROTOCOL_TYPES))
    args = parser.parse_args()
    rules = FolderConfig(path=CORPUS)
    mime, text = magic.Magic(mime=True), magic.Magic()
    print(f"| file | libmagic alone | libmagic's description | decision ({args.protocol}) |")
    print("|---|---|---|---|")
    for path in sorted(CORPUS.iterdir()):
        if path.suffix in NOT_MEDIA:
            continue
        head = path.read_bytes()[:SNIFF_BYTES]
        alone = mime.from_buffer(head)
        before = "accept" if canonical_type(alone) in DEFAULT_TYPES else "refuse"
        description = ",".join(text.from_buffer(head).split(",")[:2])[:60]
        verdict = gate.judge_type(sniff_path(path), path.stat().st_size, rules, args.protocol)
        if verdict.outcome is gate.Outcome.ACCEPT:
            now = f"accept as {verdict.content_type}"
        else:
            now = f"refuse: {verdict.reason.split('; accepted')[0]}"
        print(f"| {path.name} | {before} {alone} | {description} | {now} |")


if __name__ == "__main__":
    main()
