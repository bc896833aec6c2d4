#!/usr/bin/env bash
# pocnet demo: three States' nodes on loopback play the Annex A inquiry and
# response-to-inquiry procedures end to end through the operator CLI.
#
#   EST.cert (technical, Estonia)  --inquiry-->  FRA.cert (technical, France)
#   KEN.mfa  (diplomatic, Kenya)   tries to write to FRA.cert: refused by role.
#   FRA.cert goes offline; EST.cert's next inquiry waits, sealed, at a relay
#   that cannot read it, and reaches FRA.cert when it comes back.
#
# Usage: deploy/demo.sh            (builds release binaries first)
# Everything lives in a temporary directory that is removed at the end
# (set POCNET_DEMO_KEEP=1 to keep it).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Building pocd, poc, poc-directory and poc-relay (release)"
cargo build --release --locked -q -p pocd -p poc-cli -p poc-directory -p poc-relay
# Ask cargo where it builds (CARGO_TARGET_DIR or a config may move it).
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET_DIR/release"
POC="$BIN/poc"; POCD="$BIN/pocd"; DIRTOOL="$BIN/poc-directory"; RELAY="$BIN/poc-relay"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pocnet-demo.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${POCNET_DEMO_KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Free loopback ports, chosen by the kernel.
port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "Key ceremonies: the manager, three State roots, three PoCs"
"$DIRTOOL" init --out "$WORK/manager" >/dev/null
declare -A PORT ROLE PID
ROLE[EST.cert]=technical; ROLE[FRA.cert]=technical; ROLE[KEN.mfa]=diplomatic
CERTS=(); STATES=()
for poc in EST.cert FRA.cert KEN.mfa; do
  state=${poc%%.*}
  PORT[$poc]=$(port)
  [ -d "$WORK/$state-root" ] || { "$POC" state init --state "$state" --out "$WORK/$state-root" >/dev/null; STATES+=(--state "$state=$WORK/$state-root/state-root.pub"); }
  "$POC" init --poc "$poc" --role "${ROLE[$poc]}" --endpoint "127.0.0.1:${PORT[$poc]}" --out "$WORK/$poc" >/dev/null
  "$POC" state sign-cert --root-key "$WORK/$state-root/state-root.key" \
      --request "$WORK/$poc/$poc.request.json" --out "$WORK/$poc/$poc.cert" >/dev/null
  CERTS+=(--cert "$WORK/$poc/$poc.cert")
  echo "  $poc (${ROLE[$poc]}) certified by the $state root, listening on 127.0.0.1:${PORT[$poc]}"
done

say "The directory manager builds and signs the directory"
"$DIRTOOL" build --manager-key "$WORK/manager/manager.key" "${STATES[@]}" "${CERTS[@]}" \
    --sequence 1 --out "$WORK/directory.snapshot"

say "Starting a relay (store and forward of sealed envelopes; it sees only mailbox ids)"
mkdir -p "$WORK/relay"
RELAY_PORT=$(port); RELAY_METRICS=$(port)
RELAY_KEY=$("$RELAY" --keygen "$WORK/relay/relay.key")
cat > "$WORK/relay/poc-relay.toml" <<TOML
[relay]
listen = "127.0.0.1:$RELAY_PORT"
data_dir = "data"
identity_key = "relay.key"
metrics_listen = "127.0.0.1:$RELAY_METRICS"

[directory]
snapshot = "../directory.snapshot"
manager_key = "../manager/manager.pub"
TOML
"$RELAY" --config "$WORK/relay/poc-relay.toml" 2>"$WORK/relay/relay.log" &
PIDS+=($!)
echo "  relay-un on 127.0.0.1:$RELAY_PORT, key $RELAY_KEY"

say "Starting three pocd daemons"
for poc in EST.cert FRA.cert KEN.mfa; do
  cat > "$WORK/$poc/pocd.toml" <<TOML
[node]
poc_id = "$poc"
data_dir = "data"
identity_key = "identity.key"
prekey_key = "prekey.key"
listen = "127.0.0.1:${PORT[$poc]}"

[directory]
snapshot = "../directory.snapshot"
manager_key = "../manager/manager.pub"

[delivery]
retry_initial_seconds = 1
retry_max_seconds = 5

[[relay]]
name = "relay-un"
address = "127.0.0.1:$RELAY_PORT"
public_key = "$RELAY_KEY"
TOML
  "$POCD" --config "$WORK/$poc/pocd.toml" 2>"$WORK/$poc/pocd.log" &
  PIDS+=($!)
  PID[$poc]=$!
done
for poc in EST.cert FRA.cert KEN.mfa; do
  for _ in $(seq 100); do [ -S "$WORK/$poc/data/pocd.sock" ] && break; sleep 0.1; done
  [ -S "$WORK/$poc/data/pocd.sock" ] || { echo "pocd for $poc did not start:"; cat "$WORK/$poc/pocd.log"; exit 1; }
done
est() { "$POC" --config "$WORK/EST.cert/pocd.toml" "$@"; }
fra() { "$POC" --config "$WORK/FRA.cert/pocd.toml" "$@"; }
ken() { "$POC" --config "$WORK/KEN.mfa/pocd.toml" "$@"; }

# Waits until `cmd` prints something matching `pattern`.
wait_for() {
  local pattern=$1; shift
  for _ in $(seq 300); do "$@" 2>/dev/null | grep -q -- "$pattern" && return 0; sleep 0.1; done
  echo "timed out waiting for '$pattern' from: $*"; return 1
}

say "Inquiry procedure: CERT-EE asks CERT-FR about DDoS traffic from French addresses"
est inquire --to FRA.cert \
  --summary "Sustained DDoS against government portals from addresses in your networks" \
  --category ddos --indicator ip:192.0.2.17 --indicator net:198.51.100.0/24 --indicator domain:c2.example.net \
  --sector government --critical-infrastructure \
  --request "Owners of the listed hosts; can you act on the C2 domain?" \
  --name "Kadri Tamm" --entity CERT-EE --email duty@cert.example \
  --urgency urgent --respond-within 4h --channel pocnet --lead-agency "CERT-EE" --handling amber
THREAD=$(est inbox --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["thread_id"])')

say "FRA.cert's node records the inquiry and returns a neutral receipt"
wait_for "receipt" est show "$THREAD"

say "Response-to-inquiry procedure: CERT-FR will consider it, ETA 24 h"
wait_for "$THREAD" fra inbox
fra respond "$THREAD" --will-follow-up --eta 24h --note "We are examining the reported addresses." \
  --accept-channel --lead-agency "ANSSI / CERT-FR"
wait_for "follow-up pending" est inbox

say "CERT-FR follows up; CERT-EE closes the thread"
fra follow-up "$THREAD" --text "Two hosts cleaned; the C2 domain is suspended."
wait_for "follow-up" est show "$THREAD"
est close "$THREAD" --reason resolved --note "Thank you, traffic has stopped."
wait_for "closed" fra inbox

say "A diplomatic PoC writing to a foreign technical PoC is refused"
if ken inquire --to FRA.cert --summary "Question about the incident" 2>"$WORK/ken.err"; then
  echo "unexpected: the role rule did not apply"; exit 1
else
  sed 's/^/  /' "$WORK/ken.err"
fi

say "FRA.cert goes offline; EST.cert's next inquiry goes to the relay, sealed"
kill -TERM "${PID[FRA.cert]}"; wait "${PID[FRA.cert]}" 2>/dev/null || true
est inquire --to FRA.cert --summary "Phishing wave using look-alike domains of your ministries" \
  --category phishing --indicator domain:gouv-fr.example.net --handling green >/dev/null 2>&1
THREAD2=$(est inbox --json | python3 -c 'import json,sys; print([t["thread_id"] for t in json.load(sys.stdin) if t["subject"].startswith("Phishing")][0])')
wait_for "via relay relay-un" est outbox
est outbox | grep -F "via relay relay-un" | sed 's/^/  /'

say "FRA.cert comes back and takes its mail from the relay; the receipt returns"
"$POCD" --config "$WORK/FRA.cert/pocd.toml" 2>>"$WORK/FRA.cert/pocd.log" &
PIDS+=($!)
wait_for "$THREAD2" fra inbox
wait_for "receipt" est show "$THREAD2"
echo "  delivered through the relay and receipted"

say "The thread as EST.cert sees it"
est show "$THREAD"
say "The thread as FRA.cert sees it"
fra show "$THREAD"

say "Both records verify"
est record verify
fra record verify

say "Shutting down"
for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${PIDS[@]}"; do wait "$pid" || true; done
PIDS=()
echo "done."
