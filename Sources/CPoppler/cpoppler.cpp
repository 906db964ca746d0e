// libpoppler-cpp behind the C API of cpoppler.h. Exceptions never cross the C boundary.
#include "cpoppler.h"
#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-global.h>
#include <poppler/cpp/poppler-page.h>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

struct m3_pdf {
    std::unique_ptr<poppler::document> document;
};

// poppler reports syntax errors of damaged files on stderr; they reach the user as one
// skip message instead.
static void quiet(const std::string &, void *) {}

m3_pdf *m3_pdf_open(const char *data, size_t length, int *status) {
    static std::once_flag silenced;
    std::call_once(silenced, [] { poppler::set_debug_error_function(quiet, nullptr); });
    *status = M3_PDF_DAMAGED;
    if (data == nullptr || length == 0 || length > INT_MAX) return nullptr;
    try {
        std::unique_ptr<poppler::document> doc(poppler::document::load_from_raw_data(data, (int)length));
        if (!doc) return nullptr;
        if (doc->is_locked()) { *status = M3_PDF_ENCRYPTED; return nullptr; }
        auto *pdf = new m3_pdf;
        pdf->document = std::move(doc);
        *status = M3_PDF_OK;
        return pdf;
    } catch (...) {
        return nullptr;
    }
}

int m3_pdf_page_count(const m3_pdf *pdf) {
    try { return pdf->document->pages(); } catch (...) { return 0; }
}

char *m3_pdf_page_text(const m3_pdf *pdf, int index, size_t *length) {
    *length = 0;
    try {
        std::unique_ptr<poppler::page> page(pdf->document->create_page(index));
        if (!page) return nullptr;
        poppler::byte_array utf8 = page->text(poppler::rectf(), poppler::page::non_raw_non_physical_layout).to_utf8();
        char *out = (char *)std::malloc(utf8.size() + 1);
        if (out == nullptr) return nullptr;
        if (!utf8.empty()) std::memcpy(out, utf8.data(), utf8.size());
        out[utf8.size()] = 0;
        *length = utf8.size();
        return out;
    } catch (...) {
        return nullptr;
    }
}

void m3_pdf_free_text(char *text) { std::free(text); }

void m3_pdf_close(m3_pdf *pdf) { delete pdf; }
