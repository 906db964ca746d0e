#!/usr/bin/env bash
# Seeds for the issue-16 findings (RELIABILITY.md §6): hostile schema objects and damaged
# meta rows in an index (from the committed three-docs seed, with the sqlite3 shell),
# extreme numbers in config.json, and a repetitive document. Rerun to regenerate; the
# outputs are committed (small).
set -euo pipefail
cd "$(dirname "$0")/corpus"
base=index/three-docs.sqlite
seed() {  # name, SQL
  rm -f "index/$1.sqlite"; cp "$base" "index/$1.sqlite"
  sqlite3 "index/$1.sqlite" "$2; VACUUM;"
}
seed issue16-trigger "CREATE TRIGGER wipe AFTER INSERT ON documents BEGIN DELETE FROM documents WHERE id <> NEW.id; END"
seed issue16-view-chunks "ALTER TABLE chunks RENAME TO chunks_real; CREATE VIEW chunks AS SELECT id, document_id, ordinal, char_start, char_end, token_count, 'INJECTED' AS text, dense, sparse, colbert FROM chunks_real"
seed issue16-recursive-view "CREATE VIEW spin AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"
seed issue16-no-hnsw-header "DELETE FROM m3_meta WHERE key = 'hnsw_header'"
seed issue16-no-format-version "DELETE FROM m3_meta WHERE key = 'format_version'"
seed issue16-range-2p63 "UPDATE chunks SET char_start = -9223372036854775808, char_end = 9223372036854775807 WHERE id = (SELECT min(id) FROM chunks)"

config='{"hidden_size": HS, "num_hidden_layers": NL, "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 250002, "max_position_embeddings": 8194, "type_vocab_size": 1, "layer_norm_eps": EPS}'
i=0
for v in "HS=1e19" "HS=-1e300" "HS=1e300" "NL=16777216" "NL=1e19" "EPS=-1" "EPS=\"x\"" "EPS=1e-400"; do
  hs=16; nl=2; eps=1e-05
  case $v in HS=*) hs=${v#HS=};; NL=*) nl=${v#NL=};; EPS=*) eps=${v#EPS=};; esac
  s=${config/HS/$hs}; s=${s/NL/$nl}; s=${s/EPS/$eps}
  printf '%s' "$s" > "config/issue16-numbers-$i"; i=$((i + 1))
done

# A repetitive document (the one-line log that disconnected the graph), 4 KB.
line='2026-12-01 12:00:00 INFO worker heartbeat ok queue=0'
: > html/issue16-repetitive
while [ "$(wc -c < html/issue16-repetitive)" -lt 4000 ]; do echo "$line" >> html/issue16-repetitive; done
