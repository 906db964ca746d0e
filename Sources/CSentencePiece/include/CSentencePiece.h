// CSentencePiece: a small C interface over libsentencepiece for the XLM-R / BGE-M3
// tokenizer, reproducing the Hugging Face fast tokenizer (tokenizers' Precompiled
// normaliser + Replace(" {2,}", " ") + Metaspace pre-tokeniser + Unigram model).
//
// libsentencepiece loads and validates the model file and supplies the vocabulary and
// the precompiled normalisation map; the Hugging Face normalisation and the Unigram
// Viterbi search (double precision, Hugging Face's tie-breaking, unknown-fusing) are
// implemented here, because plain SentencePiece differs from Hugging Face on trailing
// whitespace, grapheme-wise normalisation, special tokens and score ties.
//
// All strings are passed as (pointer, byte length): they may contain NUL bytes.
// A handle is immutable once csp_create (and optionally csp_set_hf_scores) returned,
// and may then be used from any number of threads at once.
#ifndef CSENTENCEPIECE_H
#define CSENTENCEPIECE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct csp_tokenizer csp_tokenizer;

/// Builds a tokenizer from the bytes of a SentencePiece model file (XLM-R layout: id 0
/// <unk>, 1 <s>, 2 </s>, then pieces). The caller reads the file (bounded, regular files
/// only); the bytes are not needed afterwards. On failure returns NULL and writes a
/// NUL-terminated message (truncated to error_capacity bytes) to `error`.
csp_tokenizer *csp_create(const uint8_t *model, size_t model_length,
                          char *error, size_t error_capacity);

/// The tokenizer's tables as one cache image (see sentencepiece_c.cpp for the layout).
/// Returns the image's size; writes it to `out` only when `capacity` is at least that.
size_t csp_serialize(const csp_tokenizer *tokenizer, uint8_t *out, size_t capacity);

/// A tokenizer over a cache image written by csp_serialize, used in place: `image` must be
/// 8-byte aligned and outlive the tokenizer. Every count and index is checked first; a
/// damaged image gives NULL and a message in `error`, never an out-of-bounds read.
csp_tokenizer *csp_create_from_image(const uint8_t *image, size_t length,
                                     char *error, size_t error_capacity);

void csp_free(csp_tokenizer *tokenizer);

/// Hugging Face vocabulary size: SentencePiece pieces + 2 (<pad> and <mask>).
int32_t csp_vocab_size(const csp_tokenizer *tokenizer);

/// Replaces the Unigram scores with the exact double-precision scores of a Hugging Face
/// tokenizer.json (its model.vocab must list the same pieces in fairseq order). Hugging
/// Face's scores differ from the model file's float32 scores by one double ulp for a
/// quarter of the pieces, which decides some exact ties (e.g. "ع///////////////").
/// Call before sharing the handle between threads, and only on a tokenizer from
/// csp_create. Returns 0 on success, otherwise -1 and a message in `error` (scores unchanged).
int csp_set_hf_scores(csp_tokenizer *tokenizer, const uint8_t *json, size_t length,
                      char *error, size_t error_capacity);

/// Encodes one text segment that contains no literal special token.
///
/// `grapheme_lengths` lists the byte lengths of the segment's extended grapheme
/// clusters (their sum must be `length`); pass NULL when the segment is pure ASCII.
/// Writes up to min(capacity, max_tokens) tokens: Hugging Face ids and, for each token,
/// the byte range [begin, end) of the segment it came from (empty for the "▁" that is
/// prepended to the segment). Returns the number of tokens the segment has, capped at
/// max_tokens; if that exceeds `capacity`, call again with a larger buffer.
size_t csp_encode_segment(const csp_tokenizer *tokenizer,
                          const uint8_t *text, size_t length,
                          const uint32_t *grapheme_lengths, size_t grapheme_count,
                          size_t max_tokens,
                          int32_t *ids, int32_t *begins, int32_t *ends, size_t capacity);

#ifdef __cplusplus
}
#endif

#endif
