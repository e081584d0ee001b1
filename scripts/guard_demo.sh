#!/usr/bin/env bash
# The interaction policy through the CLI only (exits non-zero if any step does not hold):
#   1. a correction that contradicts global knowledge → a confirmation question → "yes" keeps the user's value;
#   2. an ambiguous question → a clarifying question under active and hybrid, an answer under passive;
#      the user's reply completes the question and it is answered.
# Usage: scripts/guard_demo.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] && source .venv/bin/activate
export DILM_DATA_DIR="${1:-$(mktemp -d)/dilm-guard-demo}"
export DILM_DECODING__MAX_NEW_TOKENS=32 PYTHONWARNINGS=ignore COLUMNS=160
json() { python -c 'import json,sys; r=json.load(sys.stdin); print(eval(sys.argv[1], {"r": r}))' "$1"; }
expect() { grep -qF -- "$1" <<<"$2" || { echo "FAILED: expected '$1' in: $2" >&2; exit 1; }; }

echo "== data dir: $DILM_DATA_DIR"
echo "== 1. a correction against global knowledge (policy: hybrid, the default)"
dilm facts add "Dunmore Bank" "head office" "Leeds" --global
Q="Where is the head office of Dunmore Bank?"
reply=$(dilm ask --user ann --json "$Q")
echo "  ann: $Q"; echo "  dilm: $(json 'r["text"]' <<<"$reply")"
fb=$(dilm feedback "$(json 'r["id"]' <<<"$reply")" --correction "No, it's in York.")
echo "  ann (correction): No, it's in York."; echo "$fb" | sed 's/^/  /'
expect "question: You told me York, but my shared knowledge says Leeds. Is York right for you?" "$fb"
ack=$(dilm ask --user ann "yes"); echo "  ann: yes"; echo "  dilm: $ack"
expect "I will keep York" "$ack"
again=$(dilm ask --user ann "$Q"); echo "  ann: $Q"; echo "  dilm: $again"
expect "York" "$again"
bob=$(dilm ask --user bob "$Q"); echo "  bob: $Q"; echo "  dilm: $bob"
expect "Leeds" "$bob"

echo "== 2. an ambiguous question under each policy"
dilm ask --user cy "Remember that the support hotline of Brindle Apps is 555-0142." >/dev/null
dilm ask --user cy "Remember that the support hotline of Carrow Tools is 555-0177." >/dev/null
for mode in passive active hybrid; do
  r=$(DILM_POLICY__MODE=$mode dilm ask --user cy --json "What is the support hotline?")
  text=$(json 'r["text"]' <<<"$r")
  echo "  [$mode] cy: What is the support hotline?"; echo "  [$mode] dilm: $text"
  if [ "$mode" = passive ]; then
    [ "$(json 'r["checks"].get("policy")' <<<"$r")" = "None" ] || { echo "FAILED: passive asked" >&2; exit 1; }
  else
    expect "Which one do you mean" "$text"
    follow=$(DILM_POLICY__MODE=$mode dilm ask --user cy --session "$(json 'r["session_id"]' <<<"$r")" "Carrow Tools")
    echo "  [$mode] cy: Carrow Tools"; echo "  [$mode] dilm: $follow"
    expect "555-0177" "$follow"
  fi
done
echo "== all steps held"
