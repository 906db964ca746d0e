#!/usr/bin/env python3
"""Hostile seeds for FuzzZip, FuzzXML and FuzzPDF (issue 14: broken files of each new
format get a clear skip message and never stop the run). Each seed is one way a DOCX,
ODT, EPUB, XML part or PDF can lie about itself; the fuzzers mutate from there. The good
samples and the hostile files of the tests come from Fixtures/documents/make_documents.py
and are copied in as they are.

    python3 Fuzz/make_document_seeds.py      # rewrites Fuzz/corpus/{zip,xml,pdf}/hostile-*
Standard library only; deterministic (fixed zip timestamps); every seed is under the
target's -max_len in run.sh."""
import io, os, shutil, struct, zipfile, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
FIXTURES = os.path.join(HERE, "..", "Fixtures", "documents")
STAMP = (2024, 1, 1, 0, 0, 0)
MAX_LEN = {"zip": 16384, "xml": 8192, "pdf": 16384}


def zip_bytes(entries, compress=zipfile.ZIP_DEFLATED):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for path, data in entries:
            info = zipfile.ZipInfo(path, STAMP)
            info.compress_type = zipfile.ZIP_STORED if path == "mimetype" else compress
            z.writestr(info, data)
    return bytearray(out.getvalue())


def central_headers(data):
    """Offsets of each central directory header (signature PK\\1\\2)."""
    at, found = 0, []
    while (at := data.find(b"PK\x01\x02", at)) >= 0:
        found.append(at)
        at += 4
    return found


def put(target, name, data):
    data = data.encode() if isinstance(data, str) else bytes(data)
    assert len(data) <= MAX_LEN[target], (name, len(data))
    with open(os.path.join(CORPUS, target, "hostile-" + name), "wb") as f:
        f.write(data)


DOC = '<w:document xmlns:w="w"><w:body><w:p><w:r><w:t>{}</w:t></w:r></w:p></w:body></w:document>'
CONTAINER = ('<?xml version="1.0"?><container><rootfiles>'
             '<rootfile full-path="{}" media-type="application/oebps-package+xml"/></rootfiles></container>')
OPF = '<package><manifest>{}</manifest><spine>{}</spine></package>'
CHAPTER = '<html><head><title>T</title></head><body><h1>Chapter</h1><p>{}</p></body></html>'


def zips():
    text = DOC.format("Hostile but readable text.")
    # An entry whose central size says 40 bytes while it inflates to far more (a bomb that
    # lies about its size; the declared size is all the budget ever sees).
    data = zip_bytes([("word/document.xml", DOC.format(" " * 200_000))])
    for h in central_headers(data):
        struct.pack_into("<I", data, h + 24, 40)
    put("zip", "lying-size.docx", data)
    # A bomb that tells the truth: 12 MB declared, over the fuzzers' 1 MiB budget.
    put("zip", "bomb-declared.docx", zip_bytes([("word/document.xml", DOC.format(" " * 12_000_000))]))
    # One byte of the deflated data changed: the CRC-32 (or zlib) must catch it.
    data = zip_bytes([("content.xml", '<office:document-content><office:text><text:p>Odd text</text:p>'
                                      '</office:text></office:document-content>')])
    data[40] ^= 0x01
    put("zip", "bad-crc.odt", data)
    # A stored entry whose CRC-32 field is wrong while its bytes are intact.
    data = zip_bytes([("word/document.xml", text)], compress=zipfile.ZIP_STORED)
    for h in central_headers(data):
        struct.pack_into("<I", data, h + 16, 0xDEADBEEF)
    put("zip", "wrong-crc-stored.docx", data)
    # Entry names that try to leave the archive, and a name used twice.
    put("zip", "traversal.docx", zip_bytes([("../../word/document.xml", text)]))
    put("zip", "absolute.epub", zip_bytes([("/META-INF/container.xml", CONTAINER.format("a.opf"))]))
    dup = zip_bytes([("word/document.xml", text), ("word/documenu.xml", text)])
    put("zip", "duplicate-name.docx", dup.replace(b"word/documenu.xml", b"word/document.xml"))
    # The encryption flag, an unknown compression method (bzip2), a zip64 end record that
    # is missing, and an end record only.
    data = zip_bytes([("word/document.xml", text)])
    for h in central_headers(data):
        data[h + 8] |= 1
    put("zip", "encrypted-flag.docx", data)
    data = zip_bytes([("word/document.xml", text)])
    for h in central_headers(data):
        struct.pack_into("<H", data, h + 10, 12)
    put("zip", "bzip2-method.docx", data)
    data = zip_bytes([("word/document.xml", text)])
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<H", data, end + 10, 0xFFFF)
    put("zip", "fake-zip64.docx", data)
    put("zip", "empty-archive.odt", b"PK\x05\x06" + b"\0" * 18)
    # An entry count the central directory cannot hold.
    data = zip_bytes([("content.xml", "<a/>")])
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 0xFFFE, 0xFFFE)
    put("zip", "entry-count.odt", data)
    # EPUB: a container naming a package outside the archive, a package that names itself
    # as its only chapter, a spine of 2,000 references to one chapter, hrefs that climb out,
    # a missing container, and a chapter nested past the depth limit.
    put("zip", "container-escape.epub", zip_bytes([("mimetype", "application/epub+zip"),
                                                   ("META-INF/container.xml", CONTAINER.format("../../x.opf"))]))
    opf = OPF.format('<item id="self" href="p.opf"/>', '<itemref idref="self"/>')
    put("zip", "self-spine.epub", zip_bytes([("mimetype", "application/epub+zip"),
                                             ("META-INF/container.xml", CONTAINER.format("p.opf")), ("p.opf", opf)]))
    opf = OPF.format('<item id="c" href="c.xhtml"/><item id="up" href="../../../etc/passwd"/>'
                     '<item id="pct" href="%2e%2e/%2e%2e/c.xhtml#frag"/>',
                     '<itemref idref="c"/>' * 2000 + '<itemref idref="up"/><itemref idref="pct"/><itemref idref="none"/>')
    put("zip", "spine-repeat.epub", zip_bytes([("mimetype", "application/epub+zip"),
                                               ("META-INF/container.xml", CONTAINER.format("OEBPS/p.opf")),
                                               ("OEBPS/p.opf", opf),
                                               ("OEBPS/c.xhtml", CHAPTER.format("One chapter, read once."))]))
    put("zip", "no-container.epub", zip_bytes([("mimetype", "application/epub+zip"),
                                               ("OEBPS/c.xhtml", CHAPTER.format("orphan"))]))
    deep = "<html><body>" + "<div>" * 300 + "deep" + "</div>" * 300 + "</body></html>"
    opf = OPF.format('<item id="c" href="c.xhtml"/>', '<itemref idref="c"/>')
    put("zip", "deep-chapter.epub", zip_bytes([("mimetype", "application/epub+zip"),
                                               ("META-INF/container.xml", CONTAINER.format("p.opf")),
                                               ("p.opf", opf), ("c.xhtml", deep)]))
    # ODT and DOCX whose text part is not XML, is empty, or is only markup.
    put("zip", "not-xml.odt", zip_bytes([("content.xml", "\x00\xff\xfe binary")]))
    put("zip", "empty-part.docx", zip_bytes([("word/document.xml", "")]))
    put("zip", "markup-only.docx", zip_bytes([("word/document.xml", DOC.format(""))]))


def xmls():
    put("xml", "deep", "<a>" * 300 + "</a>" * 300)
    put("xml", "laughs", '<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><l>&b;&b;</l>')
    put("xml", "external-entity", '<!DOCTYPE x SYSTEM "file:///etc/passwd"><x>&xxe;</x>')
    put("xml", "unterminated-comment", "<a><!-- never closed")
    put("xml", "unterminated-cdata", "<a><![CDATA[ never closed")
    put("xml", "cdata-outside", "<![CDATA[x]]><a/>")
    put("xml", "mismatched", "<a><b></a></b>")
    put("xml", "text-outside", "text<a/>more")
    put("xml", "references", "<a>&#0;&#x110000;&#xD800;&#55296;&#99999999999999999999;&#x;&#;&amp&lt;&unknown;&#65;</a>")
    put("xml", "attributes", '<a x="1" x="2" y=\'q"q\' z="&lt;&#x3c;"/>')
    put("xml", "attribute-lt", '<a x="<b>"/>')
    put("xml", "stray-slash", "<a / ></a>")
    put("xml", "invalid-utf8", b"<a>\xff\xfe\xc0\xaf\xed\xa0\x80</a>")
    put("xml", "many-tags", "<a>" + "<b/>" * 1500 + "</a>")
    put("xml", "lt-run", "<a>" + "<" * 4000 + "</a>")


def pdf_bytes(objects, trailer_extra="", xref=True, start_offset=None):
    """A PDF of `objects` (bodies of objects 1…n) with a correct xref unless told otherwise."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1")
    start = len(out)
    if xref:
        out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
        for o in offsets:
            out += f"{o:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R {trailer_extra}>>\n".encode()
    out += f"startxref\n{start if start_offset is None else start_offset}\n%%EOF\n".encode()
    return out


def stream(content, extra=""):
    return f"<< /Length {len(content)} {extra}>>\nstream\n{content}\nendstream"


FONT = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
PAGE = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"


def pdfs():
    text = "BT /F1 12 Tf 72 720 Td (Hostile page text) Tj ET"
    good = pdf_bytes(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [5 0 R] /Count 1 >>", FONT,
                      stream(text), PAGE])
    put("pdf", "truncated.pdf", good[: len(good) // 2])
    put("pdf", "header-only.pdf", b"%PDF-")
    # A page tree that claims two billion pages, and one whose Kids contain itself.
    put("pdf", "huge-count.pdf", pdf_bytes(["<< /Type /Catalog /Pages 2 0 R >>",
                                            "<< /Type /Pages /Kids [5 0 R] /Count 2147483647 >>", FONT, stream(text), PAGE]))
    put("pdf", "kids-cycle.pdf", pdf_bytes(["<< /Type /Catalog /Pages 2 0 R >>",
                                            "<< /Type /Pages /Kids [2 0 R 5 0 R 2 0 R] /Count 3 >>", FONT, stream(text), PAGE]))
    # An xref that points nowhere, a trailer whose /Prev is itself, no xref at all (poppler
    # reconstructs), and a /Root that is not a dictionary.
    put("pdf", "bad-startxref.pdf", pdf_bytes(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
                                               FONT, stream(text), PAGE], start_offset=999999))
    body = pdf_bytes(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [5 0 R] /Count 1 >>", FONT, stream(text), PAGE])
    start = int(body.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    put("pdf", "prev-loop.pdf", pdf_bytes(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
                                           FONT, stream(text), PAGE], trailer_extra=f"/Prev {start} "))
    put("pdf", "no-xref.pdf", pdf_bytes(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
                                         FONT, stream(text), PAGE], xref=False))
    put("pdf", "root-not-dict.pdf", pdf_bytes(["42", "<< /Type /Pages /Kids [5 0 R] /Count 1 >>", FONT, stream(text), PAGE]))
    # A content stream that deflates to 1.3 MB of text operators (a stream bomb), and a
    # stream whose /Length lies.
    ops = ("BT /F1 1 Tf 0 0 Td (" + "x" * 60 + ") Tj ET\n") * 20_000
    bomb = zlib.compress(ops.encode(), 9)
    assert len(bomb) < 12000, len(bomb)
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [5 0 R] /Count 1 >>", FONT, "BOMB", PAGE]
    data = pdf_bytes(objects)
    head, tail = data.split(b"BOMB")
    # The binary stream goes in place of the marker; the xref offsets after it move.
    data = head + f"<< /Length {len(bomb)} /Filter /FlateDecode >>\nstream\n".encode() + bomb + b"\nendstream" + tail
    put("pdf", "flate-bomb.pdf", fix_xref(data))
    put("pdf", "lying-length.pdf", pdf_bytes(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
                                              FONT, f"<< /Length 999999 >>\nstream\n{text}\nendstream", PAGE]))
    # Deeply nested arrays in a page's resources, and a font object that refers to itself.
    put("pdf", "nested-arrays.pdf", pdf_bytes(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
                                               "[" * 5000 + "]" * 5000, stream(text), PAGE]))
    put("pdf", "self-reference.pdf", pdf_bytes(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
                                                "3 0 R", stream(text), PAGE]))


def fix_xref(data):
    """Recomputes the xref table and startxref of a one-section PDF after bytes moved."""
    offsets = []
    at = 0
    while True:
        i = data.find(b" 0 obj\n", at)
        if i < 0:
            break
        line_start = data.rfind(b"\n", 0, i) + 1
        offsets.append(line_start)
        at = i + 1
    xref_at = data.rfind(b"xref\n")
    table = f"xref\n0 {len(offsets) + 1}\n0000000000 65535 f \n".encode() + b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    trailer = data[data.find(b"trailer\n", xref_at):data.rfind(b"startxref\n")]
    return data[:xref_at] + table + trailer + f"startxref\n{xref_at}\n%%EOF\n".encode()


def main():
    for target in ("zip", "xml", "pdf"):
        for name in os.listdir(os.path.join(CORPUS, target)):
            if name.startswith("hostile-"):
                os.remove(os.path.join(CORPUS, target, name))
    zips()
    xmls()
    pdfs()
    for name in ("bomb.docx", "deep.docx", "malformed.odt", "wrongext.epub", "laughs.docx", "truncated.docx"):
        shutil.copy(os.path.join(FIXTURES, name), os.path.join(CORPUS, "zip", name))


if __name__ == "__main__":
    main()
