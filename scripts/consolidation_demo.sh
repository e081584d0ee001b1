#!/usr/bin/env bash
# Consolidated learning end to end, through the CLI only:
#   16 corrections → dilm train (gate report) → new version live → the questions answered by the adapter with
#   memory off → dilm adapters rollback → the base model's answers are back.
# Usage: scripts/consolidation_demo.sh [DATA_DIR]   (exits non-zero if any step does not hold)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] && source .venv/bin/activate
export DILM_DATA_DIR="${1:-$(mktemp -d)/dilm-demo}"
export DILM_DECODING__MAX_NEW_TOKENS=32 PYTHONWARNINGS=ignore COLUMNS=160
N=16

mapfile -t ITEMS < <(python - "$N" <<'EOF'
import json, sys
from dilm.eval import edits
items = [i for i in edits.load()[0] if i.lang == "en"][: int(sys.argv[1])]
for i in items:
    print(json.dumps({"q": i.question, "fix": i.corrections[-1], "answer": i.answers[-1]}))
EOF
)
field() { python -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
ask_plain() { DILM_MEMORY=false dilm ask --user alice --json "$1" | python -c 'import json,sys; r=json.load(sys.stdin); print(r["adapter_version"] or "base", "|", r["text"])'; }

echo "== data dir: $DILM_DATA_DIR"
echo "== 1. base answers (memory off), then $N corrections as feedback"
declare -a BEFORE
for k in 0 1 2; do BEFORE[$k]="$(ask_plain "$(field "${ITEMS[$k]}" q)")"; echo "  ${BEFORE[$k]}"; done
for item in "${ITEMS[@]}"; do
  id=$(dilm ask --user alice --json "$(field "$item" q)" | python -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  dilm feedback "$id" --correction "$(field "$item" fix)" >/dev/null
done
echo "== 2. dilm train --user alice"
dilm train --user alice
dilm adapters list
echo "== 3. the same questions, memory off: the adapter answers"
hits=0
for k in $(seq 0 $((N - 1))); do
  out="$(ask_plain "$(field "${ITEMS[$k]}" q)")"
  want="$(field "${ITEMS[$k]}" answer)"
  if [[ "${out,,}" == *"${want,,}"* ]]; then hits=$((hits + 1)); mark="✓"; else mark="✗"; fi
  echo "  $mark $out"
done
echo "  adapter-only reliability: $hits/$N"
[ "$hits" -ge $((N * 8 / 10)) ] || { echo "FAIL: fewer than 80 % answered by the adapter"; exit 1; }
echo "== 4. dilm adapters rollback --user alice: old behaviour back"
dilm adapters rollback --user alice
for k in 0 1 2; do
  now="$(ask_plain "$(field "${ITEMS[$k]}" q)")"
  echo "  $now"
  [ "$now" == "${BEFORE[$k]}" ] || { echo "FAIL: answer after rollback differs from the base answer"; exit 1; }
done
echo "== OK"
