#!/usr/bin/env python3
"""Writes the small PDF, DOCX, ODT and EPUB samples of Tests/M3DocumentsTests, good and
hostile, plus expected.json: the sections and paragraphs each good sample was built from
(the independent reference the extractor is checked against; PDF text is checked against
poppler-utils' pdftotext in the test).

    python3 Fixtures/documents/make_documents.py     # rewrites Fixtures/documents/*
Standard library only; output is deterministic (fixed zip timestamps)."""
import json, os, struct, zipfile, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
STAMP = (2024, 1, 1, 0, 0, 0)


def write_zip(name, entries, compress=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(os.path.join(HERE, name), "w") as z:
        for path, data in entries:
            info = zipfile.ZipInfo(path, STAMP)
            # OCF: the EPUB mimetype entry is first and stored.
            info.compress_type = zipfile.ZIP_STORED if path == "mimetype" else compress
            z.writestr(info, data)


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Each sample: sections of (heading, [paragraphs]); heading None = text before any heading.
SECTIONS = [
    (None, ["Preface text before any heading & it has an ampersand."]),
    ("Introduction", ["Hybrid retrieval joins dense, sparse and late-interaction scores.",
                      "The second paragraph of the introduction."]),
    ("Method", ["Chunks carry the section they came from.", "Unicode: café, naïve, 東京."]),
]


def docx():
    body = []
    for heading, paras in SECTIONS:
        if heading:
            body.append(f'<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>{esc(heading)}</w:t></w:r></w:p>')
        for p in paras:
            # Split a run in two, as Word does, to check runs are joined.
            half = len(p) // 2
            body.append(f'<w:p><w:r><w:t xml:space="preserve">{esc(p[:half])}</w:t></w:r>'
                        f'<w:r><w:rPr><w:b/></w:rPr><w:t xml:space="preserve">{esc(p[half:])}</w:t></w:r></w:p>')
    document = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
                + "".join(body) + '<w:sectPr/></w:body></w:document>')
    types = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
             '<Default Extension="xml" ContentType="application/xml"/></Types>')
    return [("[Content_Types].xml", types), ("word/document.xml", document)]


def odt():
    body = []
    for heading, paras in SECTIONS:
        if heading:
            body.append(f'<text:h text:outline-level="1">{esc(heading)}</text:h>')
        for p in paras:
            # Two spaces as text:s, as LibreOffice writes runs of spaces.
            body.append('<text:p text:style-name="P1">' + esc(p).replace("  ", '<text:s text:c="2"/>') + '</text:p>')
    content = ('<?xml version="1.0" encoding="UTF-8"?>\n'
               '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
               'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:automatic-styles/>'
               '<office:body><office:text>' + "".join(body) + '</office:text></office:body></office:document-content>')
    return [("mimetype", "application/vnd.oasis.opendocument.text"), ("content.xml", content)]


CHAPTERS = [("Chapter One", ["It was a bright cold day in April.", "The clocks were striking thirteen."]),
            ("Chapter Two", ["Second chapter text &amp; more."])]


def epub():
    entries = [("mimetype", "application/epub+zip"),
               ("META-INF/container.xml", '<?xml version="1.0"?><container version="1.0" '
                'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>')]
    items, refs = [], []
    for i, (title, paras) in enumerate(CHAPTERS, 1):
        items.append(f'<item id="c{i}" href="Text/ch{i}.xhtml" media-type="application/xhtml+xml"/>')
        refs.append(f'<itemref idref="c{i}"/>')
        html = ('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml">'
                f'<head><title>{esc(title)} title</title><style>p {{ color: red }}</style></head><body>'
                f'<h1>{esc(title)}</h1>' + "".join(f"<p>{p}</p>" for p in paras) + '</body></html>')
        entries.append((f"OEBPS/Text/ch{i}.xhtml", html))
    opf = ('<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0"><metadata/>'
           '<manifest>' + "".join(items) + '</manifest><spine>' + "".join(reversed(refs)) + '</spine></package>')
    entries.insert(2, ("OEBPS/content.opf", opf))
    return entries


def pdf(pages, encrypt=False):
    """A minimal PDF: one Helvetica text line per page, xref offsets computed."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objs.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
        content = len(objs)
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>")
        kids.append(f"{len(objs)} 0 R")
    objs[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    trailer_extra = ""
    if encrypt:
        # A standard security handler entry: poppler asks for a password it cannot get.
        objs.append("<< /Filter /Standard /V 1 /R 2 /O <" + "00" * 32 + "> /U <" + "11" * 32 + "> /P -4 >>")
        trailer_extra = f" /Encrypt {len(objs)} 0 R /ID [<00112233445566778899aabbccddeeff> <00112233445566778899aabbccddeeff>]"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        body = o if isinstance(o, bytes) else o.encode()
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R{trailer_extra} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def main():
    write_zip("sample.docx", docx())
    write_zip("sample.odt", odt())
    write_zip("sample.epub", epub())
    pages = ["First page about retrieval", "Second page about ranking", "Third page about evaluation"]
    open(os.path.join(HERE, "sample.pdf"), "wb").write(pdf(pages))
    # Hostile and broken files: each must be skipped with a clear message.
    open(os.path.join(HERE, "encrypted.pdf"), "wb").write(pdf(["secret"], encrypt=True))
    open(os.path.join(HERE, "notext.pdf"), "wb").write(pdf([""]))
    whole = open(os.path.join(HERE, "sample.docx"), "rb").read()
    open(os.path.join(HERE, "truncated.docx"), "wb").write(whole[: len(whole) // 2])
    # Zip bomb: 200 MB of spaces deflates to ~200 KB; too big, so claim it with a small
    # entry whose header declares a huge size instead: 1 MB of zeros (~1 KB deflated),
    # then patch the declared size in the central directory to 4 GB − 1.
    bomb = os.path.join(HERE, "bomb.docx")
    write_zip("bomb.docx", [("word/document.xml", "<w:document>" + " " * (1 << 20) + "</w:document>")])
    data = bytearray(open(bomb, "rb").read())
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 0xFFFFFFFE)
    open(bomb, "wb").write(bytes(data))
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10))
              + ']><w:document><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>')
    write_zip("laughs.docx", [("word/document.xml", laughs)])
    deep = "<w:document>" + "<w:p>" * 100000 + "</w:document>"
    write_zip("deep.docx", [("word/document.xml", deep)])
    write_zip("malformed.odt", [("content.xml", "<office:document-content><text:p>unclosed</office:document-content>")])
    open(os.path.join(HERE, "wrongext.epub"), "wb").write(b"This is plain text, not an EPUB.\n")
    expected = {
        "docx": [{"section": h, "paragraphs": ([h] if h else []) + p} for h, p in SECTIONS],
        "odt": [{"section": h, "paragraphs": ([h] if h else []) + p} for h, p in SECTIONS],
        # Spine order is reversed on purpose: chapters come in spine, not manifest, order.
        "epub": [{"section": t, "paragraphs": [t] + [p.replace("&amp;", "&") for p in ps]} for t, ps in reversed(CHAPTERS)],
        "pdf_pages": pages,
    }
    json.dump(expected, open(os.path.join(HERE, "expected.json"), "w"), indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
