"""Reference token ids from open_clip for tests/tokenizer_parity.rs.

Usage: ref_tokenizer.py STRINGS.json
Reads a JSON list of strings and prints JSON {"open_clip": version, "tokenize": [[77 ids]...],
"encode": [[ids]...]}: `open_clip.tokenize(texts, context_length=77)` (padded, truncated) and
the untruncated `SimpleTokenizer().encode(text)` of each string.
"""

import json
import sys

import open_clip
from open_clip.tokenizer import SimpleTokenizer


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        texts = json.load(f)
    tokenizer = SimpleTokenizer()
    result = {
        "open_clip": open_clip.__version__,
        "tokenize": open_clip.tokenize(texts, context_length=77).tolist(),
        "encode": [tokenizer.encode(text) for text in texts],
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
