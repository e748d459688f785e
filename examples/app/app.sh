#!/usr/bin/env bash
# Example app under test: creates its queue, proves a send/receive round trip, then leaves
# APP_MESSAGES messages (MessageId "$APP_ID_PREFIX-N") on $APP_QUEUE for others to consume.
set -euo pipefail
URL=${LOCALZURE_URL:-http://localzure:5300}
QUEUE=${APP_QUEUE:-orders}
COUNT=${APP_MESSAGES:-3}
PREFIX=${APP_ID_PREFIX:-app}

QUEUE_XML='<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"/></content></entry>'

say() { echo "[example-app] $*"; }
fail() { say "FAILED: $*"; exit 1; }

create_queue() { # 201 created, 409 already there
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$URL/$1" -H 'Content-Type: application/atom+xml' -d "$QUEUE_XML")
  case $code in 201 | 409) ;; *) fail "create queue $1: HTTP $code" ;; esac
}

send() { # queue message-id body
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$URL/$1/messages" \
    -H "BrokerProperties: {\"MessageId\":\"$2\",\"Label\":\"example-app\"}" -d "$3")
  [ "$code" = 201 ] || fail "send $2 to $1: HTTP $code"
}

say "talking to $URL"
curl -sSf "$URL/health" >/dev/null || fail "health"

# Round trip on a queue of its own: send, then receive-and-delete, and compare.
create_queue app-roundtrip
token="ping-$(date +%s%N)"
send app-roundtrip "$token" "$token"
body=$(curl -sS -X DELETE "$URL/app-roundtrip/messages/head?timeout=5")
[ "$body" = "$token" ] || fail "round trip: sent '$token', received '$body'"
say "round trip ok ($token)"

create_queue "$QUEUE"
for i in $(seq 1 "$COUNT"); do
  send "$QUEUE" "$PREFIX-$i" "order $i from the example app"
done
say "sent $COUNT messages to $QUEUE"
