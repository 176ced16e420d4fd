"""Python's Unicode normalization data, for tests/unicode_parity.rs.

Prints JSON {"unidata_version": str, "unassigned": [[lo, hi], ...], "changed": [[code point,
NFC, NFD, NFKC, canonical combining class], ...]}: the ranges Python's `unicodedata` leaves
unassigned (category Cn), and every assigned code point that some normalization form changes
or whose combining class is not 0. Surrogates are skipped (they cannot be Rust chars).
"""

import json
import sys
import unicodedata


def main() -> None:
    unassigned, changed = [], []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if unicodedata.category(c) == "Cn":
            if unassigned and unassigned[-1][1] == cp - 1:
                unassigned[-1][1] = cp
            else:
                unassigned.append([cp, cp])
            continue
        forms = [unicodedata.normalize(f, c) for f in ("NFC", "NFD", "NFKC")]
        ccc = unicodedata.combining(c)
        if ccc or any(f != c for f in forms):
            changed.append([cp, *forms, ccc])
    json.dump({"unidata_version": unicodedata.unidata_version, "unassigned": unassigned, "changed": changed}, sys.stdout)


if __name__ == "__main__":
    main()
