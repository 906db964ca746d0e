// M3Search: the public library, everything an app needs to embed m3search.
//
// `SearchIndex` is the entry: open or create an index, add and remove documents, search.
// It is built from a snapshot reader (Reader/), a single writer (Writer/), ingestion of
// files and texts (Ingestion/), and evaluation and tuning (Evaluation/); see
// ARCHITECTURE.md for the flow and each part's lock story.
//
// The layers below are re-exported, so an app that imports M3Search alone sees the
// encoder (BGEM3, Embedding, Scores, …), the storage choices (ColBERTStorage, …) and
// every error type that can appear as `M3SearchError.underlying`.
@_exported import M3Index
@_exported import M3Model
@_exported import M3Store
@_exported import M3Tokenizer
