// libpoppler-cpp behind the C API of cpoppler.h, loaded with dlopen at first use (see the
// header for why). Exceptions never cross the C boundary.
//
// The poppler headers give the types; every non-inline poppler function is called through a
// pointer found by dlsym, so the object file references no poppler symbol. Member functions
// are called as free functions taking `this` first, which is how the Itanium C++ ABI (Linux,
// macOS) passes them; values returned by value keep their real C++ types (or a stand-in of
// the same size that is equally non-trivial), so the compiler passes them as the callee
// expects on every target.
#include "cpoppler.h"
#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-global.h>
#include <poppler/cpp/poppler-page.h>
#include <dlfcn.h>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

namespace {

// poppler::ustring as a page's text returns it. Destroying a real poppler::ustring would
// reference poppler's ~ustring at link time, so this stand-in holds its bytes and calls the
// looked-up destructor. Its user-provided destructor makes it non-trivial for calls, as
// ustring is, so both are returned through a hidden pointer alike.
struct PageText {
    alignas(poppler::ustring) unsigned char bytes[sizeof(poppler::ustring)];
    PageText(const PageText &) = delete;
    PageText &operator=(const PageText &) = delete;
    ~PageText();
};

// libstdc++'s (new ABI) and libc++'s spellings of the two functions whose names hold std::string.
#if defined(_LIBCPP_VERSION)
#define M3_STRING "NSt3__112basic_stringIcNS0_11char_traitsIcEENS0_9allocatorIcEEEE"
#define M3_SET_DEBUG "_ZN7poppler24set_debug_error_functionEPFvRK" M3_STRING "PvES9_"
#define M3_LOAD_RAW "_ZN7poppler8document18load_from_raw_dataEPKciRKNSt3__112basic_stringIcNS3_11char_traitsIcEENS3_9allocatorIcEEEESB_"
#else
#define M3_SET_DEBUG "_ZN7poppler24set_debug_error_functionEPFvRKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEEPvES8_"
#define M3_LOAD_RAW "_ZN7poppler8document18load_from_raw_dataEPKciRKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEESA_"
#endif

struct Poppler {
    void (*set_debug_error_function)(poppler::debug_func, void *);
    poppler::document *(*load_from_raw_data)(const char *, int, const std::string &, const std::string &);
    bool (*is_locked)(const poppler::document *);
    int (*pages)(const poppler::document *);
    poppler::page *(*create_page)(const poppler::document *, int);
    void (*destroy_document)(poppler::document *);
    void (*destroy_page)(poppler::page *);
    PageText (*page_text)(const poppler::page *, const poppler::rectf &, poppler::page::text_layout_enum);
    poppler::byte_array (*to_utf8)(const PageText *);
    void (*destroy_ustring)(PageText *);
};

// Looks every function up in `handle`; false with `missing` naming the first one absent.
bool resolve(void *handle, Poppler &p, const char *&missing) {
    struct Entry { void **slot; const char *name; };
    const Entry entries[] = {
        {(void **)&p.set_debug_error_function, M3_SET_DEBUG},
        {(void **)&p.load_from_raw_data, M3_LOAD_RAW},
        {(void **)&p.is_locked, "_ZNK7poppler8document9is_lockedEv"},
        {(void **)&p.pages, "_ZNK7poppler8document5pagesEv"},
        {(void **)&p.create_page, "_ZNK7poppler8document11create_pageEi"},
        {(void **)&p.destroy_document, "_ZN7poppler8documentD1Ev"},
        {(void **)&p.destroy_page, "_ZN7poppler4pageD1Ev"},
        {(void **)&p.page_text, "_ZNK7poppler4page4textERKNS_9rectangleIdEENS0_16text_layout_enumE"},
        {(void **)&p.to_utf8, "_ZNK7poppler7ustring7to_utf8Ev"},
        {(void **)&p.destroy_ustring, "_ZN7poppler7ustringD1Ev"},
    };
    for (const Entry &e : entries) {
        *e.slot = dlsym(handle, e.name);
        if (*e.slot == nullptr) { missing = e.name; return false; }
    }
    return true;
}

const char *const sonames[] = {
#if defined(__APPLE__)
    "libpoppler-cpp.dylib", "/opt/homebrew/lib/libpoppler-cpp.dylib", "/usr/local/lib/libpoppler-cpp.dylib",
#else
    "libpoppler-cpp.so.0", "libpoppler-cpp.so",
#endif
};

// Opens `library` and resolves `p` from it; false with `why` set (and nothing left open) when
// it cannot be.
bool open_poppler(const char *library, Poppler &p, void *&handle, std::string &why) {
    handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        const char *error = dlerror();
        why = error != nullptr ? error : std::string(library) + ": cannot be loaded";
        return false;
    }
    const char *missing = nullptr;
    if (!resolve(handle, p, missing)) {
        why = std::string(library) + " lacks " + missing + " (not a compatible libpoppler-cpp)";
        dlclose(handle);
        handle = nullptr;
        return false;
    }
    return true;
}

// poppler reports syntax errors of damaged files on stderr; they reach the user as one
// skip message instead.
void quiet(const std::string &, void *) {}

struct Loaded {
    Poppler functions{};
    std::string error;  // empty when loaded
};

// Loaded once, on first use (a function-local static: thread-safe), and never unloaded or
// destroyed (a thread still reading a PDF at exit keeps valid pointers).
const Loaded &loaded() {
    static const Loaded &state = *[] {
        auto *heap = new Loaded;
        Loaded &s = *heap;
        void *handle = nullptr;
        std::string reasons;
        if (const char *chosen = std::getenv("M3SEARCH_POPPLER_LIBRARY"); chosen != nullptr && *chosen != 0) {
            open_poppler(chosen, s.functions, handle, reasons);
        } else {
            for (const char *name : sonames) {
                std::string why;
                if (open_poppler(name, s.functions, handle, why)) break;
                if (!reasons.empty()) reasons += "; ";
                reasons += why;
            }
        }
        if (handle == nullptr) {
            s.functions = Poppler{};
            s.error = "cannot load libpoppler-cpp (" + reasons + "); install it (Debian/Ubuntu: apt-get install libpoppler-cpp0v5, or libpoppler-cpp-dev to build)";
        } else {
            s.functions.set_debug_error_function(quiet, nullptr);
        }
        return heap;
    }();
    return state;
}

PageText::~PageText() { loaded().functions.destroy_ustring(this); }

// Deletes what poppler allocated with plain new (neither class has its own operator new).
void destroy(poppler::document *d) { loaded().functions.destroy_document(d); ::operator delete(d); }
void destroy(poppler::page *p) { loaded().functions.destroy_page(p); ::operator delete(p); }

}  // namespace

struct m3_pdf {
    poppler::document *document;
};

const char *m3_pdf_unavailable(void) {
    try {
        const Loaded &l = loaded();
        return l.error.empty() ? nullptr : l.error.c_str();
    } catch (...) {
        return "cannot load libpoppler-cpp (out of memory)";
    }
}

char *m3_pdf_probe(const char *library) {
    try {
        Poppler p{};
        void *handle = nullptr;
        std::string why;
        if (!open_poppler(library, p, handle, why)) return strdup(why.c_str());
        dlclose(handle);
        return nullptr;
    } catch (...) {
        return strdup("out of memory");
    }
}

m3_pdf *m3_pdf_open(const char *data, size_t length, int *status) {
    *status = M3_PDF_DAMAGED;
    if (m3_pdf_unavailable() != nullptr) { *status = M3_PDF_UNAVAILABLE; return nullptr; }
    if (data == nullptr || length == 0 || length > INT_MAX) return nullptr;
    const Poppler &f = loaded().functions;
    poppler::document *doc = nullptr;
    try {
        doc = f.load_from_raw_data(data, (int)length, std::string(), std::string());
        if (doc == nullptr) return nullptr;
        if (f.is_locked(doc)) { destroy(doc); *status = M3_PDF_ENCRYPTED; return nullptr; }
        auto *pdf = new m3_pdf{doc};
        *status = M3_PDF_OK;
        return pdf;
    } catch (...) {
        if (doc != nullptr) destroy(doc);
        return nullptr;
    }
}

int m3_pdf_page_count(const m3_pdf *pdf) {
    try { return loaded().functions.pages(pdf->document); } catch (...) { return 0; }
}

char *m3_pdf_page_text(const m3_pdf *pdf, int index, size_t *length) {
    *length = 0;
    const Poppler &f = loaded().functions;
    poppler::page *page = nullptr;
    char *out = nullptr;
    try {
        page = f.create_page(pdf->document, index);
        if (page == nullptr) return nullptr;
        poppler::byte_array utf8;
        {
            PageText text = f.page_text(page, poppler::rectf(), poppler::page::non_raw_non_physical_layout);
            utf8 = f.to_utf8(&text);
        }
        out = (char *)std::malloc(utf8.size() + 1);
        if (out != nullptr) {
            if (!utf8.empty()) std::memcpy(out, utf8.data(), utf8.size());
            out[utf8.size()] = 0;
            *length = utf8.size();
        }
    } catch (...) {
        std::free(out);
        out = nullptr;
        *length = 0;
    }
    if (page != nullptr) destroy(page);
    return out;
}

void m3_pdf_free_text(char *text) { std::free(text); }

void m3_pdf_close(m3_pdf *pdf) {
    if (pdf == nullptr) return;
    destroy(pdf->document);
    delete pdf;
}
