#!/usr/bin/env bash
# Seeds for the issue-16 findings (RELIABILITY.md §6): hostile schema objects and damaged
# meta rows in an index (from the committed three-docs seeds, with the sqlite3 shell),
# extreme numbers in config.json, and a repetitive document. Rerun to regenerate; the
# outputs are committed (small).
set -euo pipefail
cd "$(dirname "$0")/corpus"
# Two bases: three-docs.sqlite (format 1) and three-docs-v3.sqlite (format 3: chunk
# metadata, row checksums), made by the debug binary with the tiny model:
#   m3search index docs -i v3.m3index -m Fixtures/models/tiny-safetensors --max-length 32 --overlap 4
#   sqlite3 v3.m3index "PRAGMA journal_mode=DELETE; VACUUM;"
# over a.txt "Python context managers close files with the with statement.", b.txt
# "Lighthouses guide ships past the rocks at night.", c.md "# Volcanoes / Volcanoes erupt molten lava and ash.".
seed() {  # base, name, SQL
  rm -f "index/$2.sqlite"; cp "index/$1.sqlite" "index/$2.sqlite"
  sqlite3 "index/$2.sqlite" "$3; VACUUM;"
}
columns="id, document_id, ordinal, char_start, char_end, token_count, 'INJECTED' AS text, dense, sparse, colbert"
for base in three-docs three-docs-v3; do
  suffix=${base#three-docs}
  extra=""; [ "$base" = three-docs-v3 ] && extra=", metadata"
  seed $base issue16-trigger$suffix "CREATE TRIGGER wipe AFTER INSERT ON documents BEGIN DELETE FROM documents WHERE id <> NEW.id; END"
  seed $base issue16-view-chunks$suffix "ALTER TABLE chunks RENAME TO chunks_real; CREATE VIEW chunks AS SELECT $columns$extra FROM chunks_real"
  seed $base issue16-recursive-view$suffix "CREATE VIEW spin AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"
  seed $base issue16-no-hnsw-header$suffix "DELETE FROM m3_meta WHERE key = 'hnsw_header'"
  seed $base issue16-no-format-version$suffix "DELETE FROM m3_meta WHERE key = 'format_version'"
  seed $base issue16-range-2p63$suffix "UPDATE chunks SET char_start = -9223372036854775808, char_end = 9223372036854775807 WHERE id = (SELECT min(id) FROM chunks)"
done
# Format 3 only: one byte of a dense blob rewritten under its row checksum (the damage
# issue 16 item 5 found check blind to), and chunk metadata that is not JSON.
cp index/three-docs-v3.sqlite index/issue16-checksum-v3.sqlite
python3 - index/issue16-checksum-v3.sqlite <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rowid, dense = db.execute("SELECT id, dense FROM chunks ORDER BY id LIMIT 1").fetchone()
dense = bytearray(dense); dense[9] ^= 0x80
db.execute("UPDATE chunks SET dense = ? WHERE id = ?", (bytes(dense), rowid)); db.commit(); db.execute("VACUUM")
PY
seed three-docs-v3 issue16-chunk-metadata-v3 "UPDATE chunks SET metadata = '{not json' WHERE id = (SELECT min(id) FROM chunks)"

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
