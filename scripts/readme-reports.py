#!/usr/bin/env python3
"""Write README.md's report blocks from the runs' report.md (tests/readme_reports.rs checks them).

Each block between `<!-- report: results/NAME/report.md -->` and `<!-- end of report -->` is
replaced by that file, its headings two levels down and its pictures copied to docs/NAME-*.png.
A block whose results folder is absent is left as it is.

    python3 scripts/readme-reports.py        # after make demo and/or make study
"""
import pathlib
import shutil
import sys

BEGIN, END = "<!-- report: ", "<!-- end of report -->"
root = pathlib.Path(__file__).resolve().parent.parent


def embedded(report: str, name: str) -> list:
    out = []
    for line in report.splitlines():
        if line.startswith("#"):
            line = "##" + line
        elif line.startswith("!["):
            alt, target = line[2:].split("](", 1)
            line = f"![{alt}](docs/{name}-{target}"
        out.append(line)
    return out


def main() -> int:
    readme = (root / "README.md").read_text().splitlines()
    out, i, written = [], 0, []
    while i < len(readme):
        line = readme[i]
        out.append(line)
        i += 1
        if not line.startswith(BEGIN):
            continue
        path = line[len(BEGIN):].removesuffix(" -->")
        end = readme.index(END, i)
        report = root / path
        if report.is_file():
            name = pathlib.Path(path).parent.name
            for png in report.parent.glob("*.png"):
                shutil.copyfile(png, root / "docs" / f"{name}-{png.name}")
            out.extend(embedded(report.read_text(), name))
            written.append(path)
        else:
            out.extend(readme[i:end])
        i = end
    (root / "README.md").write_text("\n".join(out) + "\n")
    print("README.md: wrote the blocks of " + (", ".join(written) or "none (no results present)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
