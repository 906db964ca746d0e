// The public library: everything an app needs to embed m3search.
// The encoder types (BGEM3, Embedding, Scores, …) come from M3Model; the search
// engine (index, query, fusion) builds on them here.
@_exported import M3Model
@_exported import M3Tokenizer
