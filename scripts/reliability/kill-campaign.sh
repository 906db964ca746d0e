#!/usr/bin/env bash
# Kill campaign (RELIABILITY.md §1): SIGKILL `m3search index` at 30 random moments over
# 1,000 files; after each kill the index must open, pass `check`, keep every document a
# reader saw committed, and find each of them; a last run must finish the job.
# The per-kill numbers go to scripts/reliability/results/kill-campaign.json.
#   usage: scripts/reliability/kill-campaign.sh [files] [kills] [seed]
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
export M3_KILL_FILES="${1:-1000}" M3_KILL_ROUNDS="${2:-30}" M3_KILL_SEED="${3:-20261129}"
export M3_KILL_RESULTS="$PWD/scripts/reliability/results/kill-campaign.json"
swift build --build-tests >/dev/null
swift test --skip-build --filter KillCampaignTests
echo "results: $M3_KILL_RESULTS"
