// Implementation of CSentencePiece.h. See the header for the contract.
//
// Hugging Face's XLMRobertaTokenizerFast (tokenizer.json of XLM-R / BGE-M3) runs, for each
// text segment between literal special tokens:
//   1. Precompiled normaliser: for every extended grapheme cluster shorter than 6 bytes,
//      the replacement of the *shortest* charsmap key that prefixes the cluster replaces
//      the whole cluster; otherwise each character is replaced on its own.
//   2. Replace(" {2,}", " ").
//   3. Metaspace: ' ' -> U+2581 "▁", prepend "▁" unless the text already starts with it,
//      split before every "▁".
//   4. Unigram Viterbi per word in double precision over the full vocabulary (including
//      the special-token strings), ties kept by the earliest start, runs of unknown
//      characters fused into one <unk>.
// SentencePiece's own Encode differs (strips leading/trailing whitespace, normalises by
// longest match, float32 scores), so only its model loading and vocabulary are used.
#include "CSentencePiece.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

constexpr int32_t kHFBos = 0, kHFPad = 1, kHFEos = 2, kHFUnk = 3;
constexpr double kUnkPenalty = 10.0;  // tokenizers::models::unigram K_UNK_PENALTY
constexpr uint8_t kMeta0 = 0xE2, kMeta1 = 0x96, kMeta2 = 0x81;  // U+2581 "▁"

void write_error(char *error, size_t capacity, const std::string &message) {
    if (error == nullptr || capacity == 0) return;
    size_t n = std::min(capacity - 1, message.size());
    std::memcpy(error, message.data(), n);
    error[n] = '\0';
}

inline size_t utf8_length(uint8_t lead) {
    if (lead < 0x80) return 1;
    if (lead < 0xE0) return 2;
    if (lead < 0xF0) return 3;
    return 4;
}

// ---------------------------------------------------------------------------------
// Protobuf wire-format walking (just enough to read NormalizerSpec.precompiled_charsmap).

bool read_varint(const uint8_t *&p, const uint8_t *end, uint64_t &value) {
    value = 0;
    for (int shift = 0; shift < 64 && p < end; shift += 7) {
        uint8_t b = *p++;
        value |= uint64_t(b & 0x7F) << shift;
        if ((b & 0x80) == 0) return true;
    }
    return false;
}

// Calls visit(field, wire_type, payload_begin, payload_end) for each field; returns false
// on malformed input.
template <typename Visit>
bool walk_message(const uint8_t *p, const uint8_t *end, Visit visit) {
    while (p < end) {
        uint64_t key;
        if (!read_varint(p, end, key)) return false;
        uint32_t field = uint32_t(key >> 3), type = uint32_t(key & 7);
        const uint8_t *begin = p;
        switch (type) {
            case 0: { uint64_t v; if (!read_varint(p, end, v)) return false; break; }
            case 1: if (end - p < 8) return false; p += 8; break;
            case 5: if (end - p < 4) return false; p += 4; break;
            case 2: {
                uint64_t n;
                if (!read_varint(p, end, n) || n > uint64_t(end - p)) return false;
                begin = p;
                p += n;
                break;
            }
            default: return false;
        }
        visit(field, type, begin, p);
    }
    return true;
}

// ---------------------------------------------------------------------------------
// The precompiled charsmap: [u32 trie byte size][darts-clone double array][pool of
// NUL-terminated replacement strings].

struct CharsMap {
    // Views: into `owned_*` after parse(), or into a cache image.
    const uint32_t *units = nullptr;
    size_t unit_count = 0;
    const char *pool = nullptr;
    size_t pool_size = 0;
    std::vector<uint32_t> owned_units;
    std::string owned_pool;

    bool parse(std::string_view blob) {
        owned_units.clear();
        owned_pool.clear();
        units = nullptr; unit_count = 0; pool = nullptr; pool_size = 0;
        if (blob.empty()) return true;  // identity
        if (blob.size() < 4) return false;
        uint32_t trie_size = uint32_t(uint8_t(blob[0])) | uint32_t(uint8_t(blob[1])) << 8 |
                             uint32_t(uint8_t(blob[2])) << 16 | uint32_t(uint8_t(blob[3])) << 24;
        if (trie_size % 4 != 0 || trie_size > blob.size() - 4 || trie_size == 0) return false;
        owned_units.resize(trie_size / 4);
        for (size_t i = 0; i < owned_units.size(); i++) {
            const uint8_t *q = reinterpret_cast<const uint8_t *>(blob.data()) + 4 + 4 * i;
            owned_units[i] = uint32_t(q[0]) | uint32_t(q[1]) << 8 | uint32_t(q[2]) << 16 | uint32_t(q[3]) << 24;
        }
        owned_pool.assign(blob.substr(4 + trie_size));
        units = owned_units.data(); unit_count = owned_units.size();
        pool = owned_pool.data(); pool_size = owned_pool.size();
        return true;
    }

    static uint32_t offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }
    static uint32_t label(uint32_t u) { return u & ((1u << 31) | 0xFFu); }
    static bool has_leaf(uint32_t u) { return ((u >> 8) & 1) != 0; }
    static uint32_t value(uint32_t u) { return u & ((1u << 31) - 1); }

    // spm_precompiled `transform`: the replacement of the first (shortest) key that is a
    // prefix of s; the search stops at a NUL byte.
    bool transform(const uint8_t *s, size_t n, const uint8_t *&out, size_t &out_len) const {
        if (unit_count == 0) return false;
        size_t pos = offset(units[0]);
        for (size_t i = 0; i < n; i++) {
            uint8_t c = s[i];
            if (c == 0) return false;
            pos ^= c;
            if (pos >= unit_count) return false;
            uint32_t u = units[pos];
            if (label(u) != c) return false;
            pos ^= offset(u);
            if (has_leaf(u)) {
                if (pos >= unit_count) return false;
                size_t v = value(units[pos]);
                if (v >= pool_size) return false;
                const char *start = pool + v;
                const void *nul = std::memchr(start, 0, pool_size - v);
                out = reinterpret_cast<const uint8_t *>(start);
                out_len = nul ? size_t(static_cast<const char *>(nul) - start) : pool_size - v;
                return true;
            }
        }
        return false;
    }
};

// ---------------------------------------------------------------------------------
// Byte trie over the Hugging Face vocabulary.

struct VocabTrie {
    // A node's children are edges [first, first + count): sorted labels and target nodes.
    struct Node { uint32_t first = 0, count = 0; int32_t id = -1; };
    // Views: into `owned_*` after build(), or into a cache image.
    const Node *nodes = nullptr;
    size_t node_count = 0;
    const uint8_t *labels = nullptr;
    const uint32_t *targets = nullptr;
    size_t edge_count = 0;
    uint32_t root_child[256];
    std::vector<Node> owned_nodes;
    std::vector<uint8_t> owned_labels;
    std::vector<uint32_t> owned_targets;

    void build(std::vector<std::pair<std::string_view, int32_t>> keys) {
        std::sort(keys.begin(), keys.end());
        auto &ns = owned_nodes;
        ns.assign(1, Node());
        owned_labels.clear();
        owned_targets.clear();
        struct Job { uint32_t node; size_t lo, hi, depth; };
        std::vector<Job> queue{{0, 0, keys.size(), 0}};
        for (size_t q = 0; q < queue.size(); q++) {
            Job job = queue[q];
            size_t lo = job.lo;
            while (lo < job.hi && keys[lo].first.size() == job.depth) {
                if (ns[job.node].id < 0) ns[job.node].id = keys[lo].second;  // duplicates: first
                lo++;
            }
            ns[job.node].first = uint32_t(owned_labels.size());
            while (lo < job.hi) {
                uint8_t c = uint8_t(keys[lo].first[job.depth]);
                size_t hi = lo;
                while (hi < job.hi && uint8_t(keys[hi].first[job.depth]) == c) hi++;
                uint32_t child = uint32_t(ns.size());
                ns.emplace_back();
                owned_labels.push_back(c);
                owned_targets.push_back(child);
                queue.push_back({child, lo, hi, job.depth + 1});
                lo = hi;
            }
            ns[job.node].count = uint32_t(owned_labels.size()) - ns[job.node].first;
        }
        attach(ns.data(), ns.size(), owned_labels.data(), owned_targets.data(), owned_labels.size());
    }

    // Points the trie at node and edge arrays (already validated) and fills root_child.
    void attach(const Node *n, size_t nn, const uint8_t *l, const uint32_t *t, size_t ne) {
        nodes = n; node_count = nn; labels = l; targets = t; edge_count = ne;
        std::fill(std::begin(root_child), std::end(root_child), UINT32_MAX);
        for (uint32_t i = 0; i < nodes[0].count; i++)
            root_child[labels[nodes[0].first + i]] = targets[nodes[0].first + i];
    }

    uint32_t child(uint32_t node, uint8_t c) const {
        if (node == 0) return root_child[c];
        const Node &n = nodes[node];
        const uint8_t *b = labels + n.first, *e = b + n.count;
        const uint8_t *it = std::lower_bound(b, e, c);
        if (it == e || *it != c) return UINT32_MAX;
        return targets[n.first + uint32_t(it - b)];
    }
};

struct BestPath { double score; int32_t start; int32_t id; };

struct Scratch {
    std::vector<uint8_t> norm;
    std::vector<int32_t> src_begin, src_end;
    std::vector<BestPath> best;
    std::vector<int32_t> tok_start, tok_id;
};

}  // namespace

struct csp_tokenizer {
    CharsMap charsmap;
    VocabTrie trie;
    // Scores by Hugging Face id: a view into `owned_scores`, or into a cache image.
    const double *scores = nullptr;
    std::vector<double> owned_scores;
    std::vector<std::string> pieces;  // by Hugging Face id; only when built from a model
    double unk_score = 0;
    int32_t vocab_size = 0;

    bool init(const sentencepiece::SentencePieceProcessor &sp, char *error, size_t capacity);
    void update_unk_score() {
        double lowest = std::numeric_limits<double>::infinity();
        for (int32_t i = 0; i < vocab_size; i++) lowest = std::min(lowest, scores[i]);
        unk_score = lowest - kUnkPenalty;
    }
    size_t encode_word(const uint8_t *w, size_t n, Scratch &s) const;
};

bool csp_tokenizer::init(const sentencepiece::SentencePieceProcessor &sp, char *error, size_t capacity) {
    const int n = sp.GetPieceSize();
    if (n < 3 || !sp.IsUnknown(0) || sp.IdToPiece(1) != "<s>" || sp.IdToPiece(2) != "</s>" ||
        !sp.IsControl(1) || !sp.IsControl(2)) {
        write_error(error, capacity,
                    "not an XLM-R SentencePiece model (expected ids 0 <unk>, 1 <s>, 2 </s>)");
        return false;
    }
    // fairseq / Hugging Face layout: <s> <pad> </s> <unk>, SentencePiece id + 1, <mask>.
    vocab_size = n + 2;
    pieces.resize(size_t(vocab_size));
    owned_scores.assign(size_t(vocab_size), 0.0);
    pieces[0] = "<s>"; pieces[1] = "<pad>"; pieces[2] = "</s>"; pieces[3] = "<unk>";
    for (int i = 3; i < n; i++) {
        pieces[size_t(i) + 1] = sp.IdToPiece(i);
        owned_scores[size_t(i) + 1] = double(sp.GetScore(i));
        // NaN or infinite scores would make every Viterbi comparison meaningless.
        if (!std::isfinite(owned_scores[size_t(i) + 1])) {
            write_error(error, capacity, "piece " + std::to_string(i) + " has a score that is not a finite number");
            return false;
        }
    }
    pieces[size_t(n) + 1] = "<mask>";
    scores = owned_scores.data();
    update_unk_score();

    std::vector<std::pair<std::string_view, int32_t>> keys;
    keys.reserve(pieces.size());
    for (size_t i = 0; i < pieces.size(); i++)
        if (!pieces[i].empty()) keys.emplace_back(pieces[i], int32_t(i));
    trie.build(std::move(keys));

    // NormalizerSpec (ModelProto field 3) . precompiled_charsmap (field 2); last wins.
    const std::string proto = sp.serialized_model_proto();
    const uint8_t *p = reinterpret_cast<const uint8_t *>(proto.data());
    std::string_view spec, blob;
    bool ok = walk_message(p, p + proto.size(), [&](uint32_t f, uint32_t t, const uint8_t *b, const uint8_t *e) {
        if (f == 3 && t == 2) spec = std::string_view(reinterpret_cast<const char *>(b), size_t(e - b));
    });
    if (ok && !spec.empty()) {
        const uint8_t *q = reinterpret_cast<const uint8_t *>(spec.data());
        ok = walk_message(q, q + spec.size(), [&](uint32_t f, uint32_t t, const uint8_t *b, const uint8_t *e) {
            if (f == 2 && t == 2) blob = std::string_view(reinterpret_cast<const char *>(b), size_t(e - b));
        });
    }
    if (!ok || !charsmap.parse(blob)) {
        write_error(error, capacity, "cannot read the model's normalizer_spec.precompiled_charsmap");
        return false;
    }
    return true;
}

// Viterbi over one Metaspace word; leaves the tokens (normalized-byte starts relative to
// w, Hugging Face ids) in s.tok_start / s.tok_id, in order. Returns their number.
size_t csp_tokenizer::encode_word(const uint8_t *w, size_t n, Scratch &s) const {
    auto &best = s.best;
    best.assign(n + 1, BestPath{0.0, -1, -1});
    size_t pos = 0;
    while (pos < n) {
        const double till_here = best[pos].score;
        const size_t mblen = std::min(utf8_length(w[pos]), n - pos);
        bool has_single = false;
        uint32_t node = 0;
        for (size_t k = pos; k < n; k++) {
            node = trie.child(node, w[k]);
            if (node == UINT32_MAX) break;
            int32_t id = trie.nodes[node].id;
            if (id < 0) continue;
            size_t end = k + 1;
            double candidate = scores[size_t(id)] + till_here;
            BestPath &target = best[end];
            if (target.start < 0 || candidate > target.score) {
                target.score = candidate;
                target.start = int32_t(pos);
                target.id = id;
            }
            if (end - pos == mblen) has_single = true;
        }
        if (!has_single) {
            BestPath &target = best[pos + mblen];
            double candidate = unk_score + till_here;
            if (target.start < 0 || candidate > target.score) {
                target.score = candidate;
                target.start = int32_t(pos);
                target.id = kHFUnk;
            }
        }
        pos += mblen;
    }
    // Backtrack; consecutive unknowns become one <unk>.
    s.tok_start.clear();
    s.tok_id.clear();
    size_t end = n;
    while (end > 0) {
        const BestPath &node = best[end];
        if (node.id == kHFUnk && !s.tok_id.empty() && s.tok_id.back() == kHFUnk &&
            s.tok_start.back() == int32_t(end)) {
            s.tok_start.back() = node.start;  // extend the fused unknown leftwards
        } else {
            s.tok_start.push_back(node.start);
            s.tok_id.push_back(node.id);
        }
        end = size_t(node.start);
    }
    std::reverse(s.tok_start.begin(), s.tok_start.end());
    std::reverse(s.tok_id.begin(), s.tok_id.end());
    return s.tok_id.size();
}

extern "C" {

csp_tokenizer *csp_create(const uint8_t *model, size_t model_length, char *error, size_t error_capacity) {
    // libsentencepiece throws on some malformed models (e.g. Darts' "zero-length key" for
    // an empty piece, found by FuzzTokenizer); an exception must not cross into Swift.
    try {
        // The processor is only needed while loading: the tokenizer keeps its own tables.
        sentencepiece::SentencePieceProcessor sp;
        auto status = sp.LoadFromSerializedProto(
            std::string_view(reinterpret_cast<const char *>(model), model_length));
        if (!status.ok()) {
            write_error(error, error_capacity, status.ToString());
            return nullptr;
        }
        auto t = std::make_unique<csp_tokenizer>();
        if (!t->init(sp, error, error_capacity)) return nullptr;
        return t.release();
    } catch (const std::exception &e) {
        write_error(error, error_capacity, std::string("malformed SentencePiece model: ") + e.what());
    } catch (...) {
        write_error(error, error_capacity, "malformed SentencePiece model");
    }
    return nullptr;
}

// ---------------------------------------------------------------------------------
// Cache image: the tables encode() reads, laid out so they can be used in place from a
// memory map. Little-endian; every section starts 8-byte aligned:
//   header   48 bytes: "CSPIMG01", u32 vocab_size, node_count, edge_count, unit_count,
//            pool_size, reserved 0, u64 reserved 0, u64 total size
//   scores   f64 × vocab_size                  (Hugging Face id order)
//   nodes    {u32 first, u32 count, i32 id} × node_count   (trie, root first)
//   labels   u8 × edge_count, targets u32 × edge_count       (each node's edges, sorted)
//   units    u32 × unit_count, pool u8 × pool_size           (precompiled charsmap)
// The image is untrusted when read back: every count and index is checked before use.

namespace {

constexpr char kImageMagic[8] = {'C', 'S', 'P', 'I', 'M', 'G', '0', '1'};
constexpr size_t kImageHeader = 48;

inline uint64_t align8(uint64_t n) { return (n + 7) & ~uint64_t(7); }

struct ImageLayout {
    uint64_t scores, nodes, labels, targets, units, pool, total;
    ImageLayout(uint64_t vocab, uint64_t node_count, uint64_t edges, uint64_t unit_count, uint64_t pool_size) {
        scores = kImageHeader;
        nodes = scores + align8(8 * vocab);
        labels = nodes + align8(sizeof(VocabTrie::Node) * node_count);
        targets = labels + align8(edges);
        units = targets + align8(4 * edges);
        pool = units + align8(4 * unit_count);
        total = pool + align8(pool_size);
    }
};

inline void put32(uint8_t *p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void put64(uint8_t *p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint32_t get32(const uint8_t *p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline uint64_t get64(const uint8_t *p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

static_assert(sizeof(VocabTrie::Node) == 12, "trie nodes are stored as three 32-bit fields");

}  // namespace

size_t csp_serialize(const csp_tokenizer *t, uint8_t *out, size_t capacity) {
    const ImageLayout at(uint64_t(t->vocab_size), t->trie.node_count, t->trie.edge_count,
                         t->charsmap.unit_count, t->charsmap.pool_size);
    if (out == nullptr || capacity < at.total) return size_t(at.total);
    std::memset(out, 0, size_t(at.total));
    std::memcpy(out, kImageMagic, 8);
    put32(out + 8, uint32_t(t->vocab_size));
    put32(out + 12, uint32_t(t->trie.node_count));
    put32(out + 16, uint32_t(t->trie.edge_count));
    put32(out + 20, uint32_t(t->charsmap.unit_count));
    put32(out + 24, uint32_t(t->charsmap.pool_size));
    put64(out + 40, at.total);
    std::memcpy(out + at.scores, t->scores, 8 * size_t(t->vocab_size));
    std::memcpy(out + at.nodes, t->trie.nodes, sizeof(VocabTrie::Node) * t->trie.node_count);
    std::memcpy(out + at.labels, t->trie.labels, t->trie.edge_count);
    std::memcpy(out + at.targets, t->trie.targets, 4 * t->trie.edge_count);
    if (t->charsmap.unit_count) std::memcpy(out + at.units, t->charsmap.units, 4 * t->charsmap.unit_count);
    if (t->charsmap.pool_size) std::memcpy(out + at.pool, t->charsmap.pool, t->charsmap.pool_size);
    return size_t(at.total);
}

csp_tokenizer *csp_create_from_image(const uint8_t *image, size_t length, char *error, size_t error_capacity) {
    auto fail = [&](const char *why) -> csp_tokenizer * {
        write_error(error, error_capacity, std::string("tokenizer cache image: ") + why);
        return nullptr;
    };
    if (image == nullptr || reinterpret_cast<uintptr_t>(image) % 8 != 0) return fail("not 8-byte aligned");
    if (length < kImageHeader || std::memcmp(image, kImageMagic, 8) != 0) return fail("bad magic");
    const uint64_t vocab = get32(image + 8), node_count = get32(image + 12), edges = get32(image + 16);
    const uint64_t unit_count = get32(image + 20), pool_size = get32(image + 24);
    // XLM-R has 250,002 ids; 2^25 bounds anything sentencepiece could describe.
    if (vocab < 5 || vocab > (uint64_t(1) << 25)) return fail("vocabulary size out of range");
    if (node_count < 1 || edges != node_count - 1) return fail("trie node and edge counts disagree");
    const ImageLayout at(vocab, node_count, edges, unit_count, pool_size);
    if (at.total != length || get64(image + 40) != length) return fail("size does not match its counts");

    auto t = std::make_unique<csp_tokenizer>();
    t->vocab_size = int32_t(vocab);
    t->scores = reinterpret_cast<const double *>(image + at.scores);
    for (uint64_t i = 0; i < vocab; i++)
        if (!std::isfinite(t->scores[i])) return fail("a score is not finite");
    const auto *nodes = reinterpret_cast<const VocabTrie::Node *>(image + at.nodes);
    const auto *targets = reinterpret_cast<const uint32_t *>(image + at.targets);
    for (uint64_t i = 0; i < node_count; i++) {
        const VocabTrie::Node &n = nodes[i];
        if (uint64_t(n.first) + n.count > edges) return fail("a trie node's edges lie outside the edge table");
        if (n.id < -1 || int64_t(n.id) >= int64_t(vocab)) return fail("a trie node's id is outside the vocabulary");
    }
    if (nodes[0].count > 256) return fail("the trie root has more than 256 edges");
    for (uint64_t e = 0; e < edges; e++)
        if (targets[e] == 0 || targets[e] >= node_count) return fail("a trie edge points outside the trie");
    t->trie.attach(nodes, size_t(node_count), image + at.labels, targets, size_t(edges));
    t->charsmap.units = unit_count ? reinterpret_cast<const uint32_t *>(image + at.units) : nullptr;
    t->charsmap.unit_count = size_t(unit_count);
    t->charsmap.pool = pool_size ? reinterpret_cast<const char *>(image + at.pool) : nullptr;
    t->charsmap.pool_size = size_t(pool_size);
    t->update_unk_score();
    return t.release();
}

void csp_free(csp_tokenizer *tokenizer) { delete tokenizer; }

int32_t csp_vocab_size(const csp_tokenizer *tokenizer) { return tokenizer->vocab_size; }

size_t csp_encode_segment(const csp_tokenizer *t, const uint8_t *text, size_t length,
                          const uint32_t *grapheme_lengths, size_t grapheme_count,
                          size_t max_tokens,
                          int32_t *ids, int32_t *begins, int32_t *ends, size_t capacity) {
    thread_local Scratch s;
    auto &norm = s.norm;
    auto &sb = s.src_begin;
    auto &se = s.src_end;
    norm.assign(3, 0);  // room for the prepended "▁"
    sb.assign(3, 0);
    se.assign(3, 0);
    bool last_space = false;

    // Appends a replacement (or original) string for source bytes [b, e): Replace(" {2,}")
    // and the Metaspace ' ' -> "▁" substitution are applied on the fly.
    auto emit = [&](const uint8_t *r, size_t n, int32_t b, int32_t e) {
        for (size_t i = 0; i < n; i++) {
            if (r[i] == ' ') {
                if (last_space) {
                    for (size_t j = norm.size() - 3; j < norm.size(); j++) se[j] = e;
                    continue;
                }
                norm.push_back(kMeta0); norm.push_back(kMeta1); norm.push_back(kMeta2);
                for (int j = 0; j < 3; j++) { sb.push_back(b); se.push_back(e); }
                last_space = true;
            } else {
                norm.push_back(r[i]);
                sb.push_back(b);
                se.push_back(e);
                last_space = false;
            }
        }
    };
    auto normalize_piece = [&](size_t b, size_t n) {
        const uint8_t *out;
        size_t out_len;
        if (t->charsmap.transform(text + b, n, out, out_len))
            emit(out, out_len, int32_t(b), int32_t(b + n));
        else
            emit(text + b, n, int32_t(b), int32_t(b + n));
    };
    auto normalize_grapheme = [&](size_t b, size_t n) {
        const uint8_t *out;
        size_t out_len;
        if (n < 6 && t->charsmap.transform(text + b, n, out, out_len)) {
            emit(out, out_len, int32_t(b), int32_t(b + n));
            return;
        }
        for (size_t i = b; i < b + n;) {
            size_t m = std::min(utf8_length(text[i]), b + n - i);
            normalize_piece(i, m);
            i += m;
        }
    };

    if (grapheme_lengths == nullptr) {  // ASCII: every byte is a cluster, except CR LF
        for (size_t i = 0; i < length;) {
            size_t n = (text[i] == '\r' && i + 1 < length && text[i + 1] == '\n') ? 2 : 1;
            normalize_grapheme(i, n);
            i += n;
        }
    } else {
        size_t b = 0;
        for (size_t g = 0; g < grapheme_count && b < length; g++) {
            size_t n = std::min(size_t(grapheme_lengths[g]), length - b);
            normalize_grapheme(b, n);
            b += n;
        }
        if (b < length) normalize_grapheme(b, length - b);
    }

    size_t start = 3;
    if (norm.size() == 3) return 0;  // normalises to nothing: no tokens at all
    if (!(norm[3] == kMeta0 && norm.size() >= 6 && norm[4] == kMeta1 && norm[5] == kMeta2)) {
        norm[0] = kMeta0; norm[1] = kMeta1; norm[2] = kMeta2;  // prepend, empty source range
        start = 0;
    }

    // Metaspace split: a word starts at every "▁".
    size_t count = 0;
    const size_t total = norm.size();
    size_t w = start;
    while (w < total && count < max_tokens) {
        size_t we = w + 3;
        while (we < total && !(norm[we] == kMeta0 && we + 2 < total && norm[we + 1] == kMeta1 &&
                               norm[we + 2] == kMeta2))
            we++;
        if (we > total) we = total;
        size_t n = t->encode_word(norm.data() + w, we - w, s);
        for (size_t i = 0; i < n && count < max_tokens; i++, count++) {
            if (count >= capacity) continue;
            size_t tb = w + size_t(s.tok_start[i]);
            size_t te = (i + 1 < n) ? w + size_t(s.tok_start[i + 1]) : we;
            ids[count] = s.tok_id[i];
            int32_t b = sb[tb], e = se[te - 1];
            for (size_t j = tb; j < te; j++) {  // skip the empty range of a prepended "▁"
                if (se[j] > sb[j]) { b = sb[j]; break; }
            }
            begins[count] = b;
            ends[count] = std::max(b, e);
        }
        w = we;
    }
    return count;
}

}  // extern "C"

// ---------------------------------------------------------------------------------
// tokenizer.json scores.

namespace {

struct JsonCursor {
    const char *p, *end;
    void ws() { while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++; }
    bool eat(char c) { ws(); if (p < end && *p == c) { p++; return true; } return false; }

    static void put_utf8(std::string &out, uint32_t cp) {
        if (cp < 0x80) out += char(cp);
        else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
        else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
        }
    }
    bool hex4(uint32_t &v) {
        if (end - p < 4) return false;
        v = 0;
        for (int i = 0; i < 4; i++) {
            char c = *p++;
            v <<= 4;
            if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
            else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
            else return false;
        }
        return true;
    }
    bool string(std::string &out) {
        out.clear();
        if (!eat('"')) return false;
        while (p < end) {
            char c = *p++;
            if (c == '"') return true;
            if (c != '\\') { out += c; continue; }
            if (p >= end) return false;
            char e = *p++;
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp;
                    if (!hex4(cp)) return false;
                    if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                        p += 2;
                        uint32_t lo;
                        if (!hex4(lo) || lo < 0xDC00 || lo >= 0xE000) return false;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    put_utf8(out, cp);
                    break;
                }
                default: return false;
            }
        }
        return false;
    }
    bool number(double &v) {
        ws();
        char buf[64];
        size_t n = 0;
        while (p < end && n < sizeof buf - 1 && std::strchr("+-0123456789.eE", *p) && *p) buf[n++] = *p++;
        buf[n] = '\0';
        if (n == 0) return false;
        char *stop;
        v = std::strtod(buf, &stop);
        return stop == buf + n;
    }
};

const char *find(const char *b, const char *e, std::string_view needle) {
    auto it = std::search(b, e, needle.begin(), needle.end());
    return it == e ? nullptr : it;
}

}  // namespace

extern "C" int csp_set_hf_scores(csp_tokenizer *t, const uint8_t *json, size_t length,
                                 char *error, size_t error_capacity) {
    const char *b = reinterpret_cast<const char *>(json), *e = b + length;
    const char *model = find(b, e, "\"model\"");
    const char *vocab = model ? find(model, e, "\"vocab\"") : nullptr;
    if (!vocab) {
        write_error(error, error_capacity, "tokenizer.json: no model.vocab");
        return -1;
    }
    JsonCursor c{vocab + 7, e};
    if (t->pieces.empty()) {
        write_error(error, error_capacity, "tokenizer.json scores can only be set on a tokenizer built from its model");
        return -1;
    }
    std::vector<double> scores;
    scores.reserve(t->pieces.size());
    std::string piece;
    if (!c.eat(':') || !c.eat('[')) {
        write_error(error, error_capacity, "tokenizer.json: model.vocab is not a list");
        return -1;
    }
    if (!c.eat(']')) {
        do {
            double score;
            if (!c.eat('[') || !c.string(piece) || !c.eat(',') || !c.number(score) || !c.eat(']')) {
                write_error(error, error_capacity,
                            "tokenizer.json: bad model.vocab entry " + std::to_string(scores.size()));
                return -1;
            }
            size_t i = scores.size();
            if (!std::isfinite(score)) {
                write_error(error, error_capacity,
                            "tokenizer.json: model.vocab entry " + std::to_string(i) + " has a score that is not a finite number");
                return -1;
            }
            if (i >= t->pieces.size() || piece != t->pieces[i]) {
                write_error(error, error_capacity,
                            "tokenizer.json: model.vocab entry " + std::to_string(i) + " \"" + piece +
                                "\" does not match the SentencePiece model");
                return -1;
            }
            scores.push_back(score);
        } while (c.eat(','));
        if (!c.eat(']')) {
            write_error(error, error_capacity, "tokenizer.json: unterminated model.vocab");
            return -1;
        }
    }
    if (scores.size() != t->pieces.size()) {
        write_error(error, error_capacity,
                    "tokenizer.json: model.vocab has " + std::to_string(scores.size()) +
                        " entries, the SentencePiece model " + std::to_string(t->pieces.size()));
        return -1;
    }
    t->owned_scores = std::move(scores);
    t->scores = t->owned_scores.data();
    t->update_unk_score();
    return 0;
}
