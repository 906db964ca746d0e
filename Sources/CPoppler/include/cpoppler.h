// A C API over poppler's C++ library (libpoppler-cpp), just what M3Documents needs: open a
// PDF held in memory, count its pages, and get each page's text as UTF-8.
//
// libpoppler-cpp is not a link-time dependency: it and its ~30 libraries (libpoppler, nss,
// lcms, openjpeg, tiff, …) cost every process start several milliseconds in the dynamic
// linker, and only PDF extraction needs them. The first m3_pdf_open (or m3_pdf_unavailable)
// dlopens it and looks up the few functions used.
#ifndef CPOPPLER_H
#define CPOPPLER_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct m3_pdf m3_pdf;

/// Why m3_pdf_open returned NULL.
enum m3_pdf_status { M3_PDF_OK = 0, M3_PDF_DAMAGED = 1, M3_PDF_ENCRYPTED = 2, M3_PDF_UNAVAILABLE = 3 };

/// Loads libpoppler-cpp once per process (thread-safe). NULL when it is loaded, else why it
/// cannot be (a message that lives as long as the process). $M3SEARCH_POPPLER_LIBRARY, when
/// set, names the library file to load instead of the usual sonames.
const char *m3_pdf_unavailable(void);

/// Whether `library` (a file name or soname) could serve as libpoppler-cpp: NULL when it
/// loads and has every function used, else why not (free it with m3_pdf_free_text). Loads
/// nothing for good and changes nothing m3_pdf_unavailable decided.
char *m3_pdf_probe(const char *library);

/// Opens `length` bytes of PDF. The bytes must stay alive and unchanged until m3_pdf_close.
/// NULL with *status set when the file is not a readable PDF, needs a password, or poppler
/// is unavailable (see m3_pdf_unavailable).
m3_pdf *m3_pdf_open(const char *data, size_t length, int *status);
/// The number of pages (0 or more).
int m3_pdf_page_count(const m3_pdf *pdf);
/// The text of page `index` (0-based) as UTF-8 in reading order, `*length` bytes, or NULL
/// when the page cannot be read. Free it with m3_pdf_free_text.
char *m3_pdf_page_text(const m3_pdf *pdf, int index, size_t *length);
void m3_pdf_free_text(char *text);
void m3_pdf_close(m3_pdf *pdf);

#ifdef __cplusplus
}
#endif
#endif
