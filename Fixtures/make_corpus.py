"""Build the test corpus Fixtures/corpus/ from Python's own documentation.

The text is the "topics" section of the Python language reference and library docs that
CPython ships as pydoc_data/topics.py (PSF License Version 2, see corpus/LICENSE.md).
One file per topic; a few are written as HTML, reStructuredText and Markdown so the
indexer's readers are exercised too.

Usage: python3 Fixtures/make_corpus.py
"""
import html, os, re, shutil, sys

import pydoc_data.topics as topics

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")

LICENSE = """# License of this corpus

The files in this folder are the documentation topics that CPython ships in
`pydoc_data/topics.py` (Python {version}), one file per topic, unchanged but for the
file format of a few (HTML, reStructuredText, Markdown).

Copyright © 2001 Python Software Foundation. All rights reserved.
Licensed under the PSF License Version 2: https://docs.python.org/3/license.html
"""


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for i, (name, text) in enumerate(sorted(topics.topics.items())):
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        if i % 10 == 3:
            paras = "".join(f"<p>{html.escape(p)}</p>\n" for p in text.split("\n\n"))
            body = f"<html><head><title>{name}</title><style>p {{ color: red }}</style>" \
                   f"<script>var x = 1;</script></head><body><h1>{name}</h1>\n{paras}</body></html>\n"
            path = os.path.join(OUT, f"{slug}.html")
        elif i % 10 == 6:
            body = f"{name}\n{'=' * len(name)}\n\n{text}"
            path = os.path.join(OUT, f"{slug}.rst")
        elif i % 10 == 8:
            body = f"# {name}\n\n{text}"
            path = os.path.join(OUT, f"{slug}.md")
        else:
            body = text
            path = os.path.join(OUT, f"{slug}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(body)
    with open(os.path.join(OUT, "LICENSE.md"), "w") as f:
        f.write(LICENSE.format(version=sys.version.split()[0]))


if __name__ == "__main__":
    main()
