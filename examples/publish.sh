#!/usr/bin/env sh
# Publish to herald from a shell: everyone, one id, or one channel.
#   examples/publish.sh "Ping"            # everyone
#   examples/publish.sh "Hi" id 63        # clients registered as 63
#   examples/publish.sh "Goal" channel sport
#
# The message gets one Idempotency-Key, sent with every attempt, so a retry
# after a 504 or a lost connection is never delivered twice. 503, 504 and
# no answer at all are retried, up to 5 attempts, after Retry-After or
# 0.2 s, 0.4 s, 0.8 s... (the first wait: HERALD_RETRY_BASE_MS) with
# jitter; no wait is longer than 25 times the first (5 s), even when
# Retry-After asks more. Any other answer is final. Exits 0 once herald
# took the message.
url=${HERALD_URL:-http://127.0.0.1:8001/}
wait_ms=${HERALD_RETRY_BASE_MS:-200}
cap_ms=$((wait_ms * 25))
auth=
[ -n "$HERALD_KEY" ] && auth="Authorization: Bearer $HERALD_KEY"
key=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
if [ -n "$2" ]; then
  set -- --data-urlencode "message=$1" --data-urlencode "$2=$3"
else
  set -- --data-urlencode "message=$1"
fi
reply=$(mktemp) || exit 1
trap 'rm -f "$reply" "$reply.head"' EXIT

attempt=1
while :; do
  : >"$reply"
  : >"$reply.head"
  # The status, or 000 when no answer came (refused, reset, timed out).
  status=$(curl -sS -m 5 -o "$reply" -D "$reply.head" -w '%{http_code}' \
    -H "Idempotency-Key: $key" ${auth:+-H "$auth"} "$@" "$url")
  case $status in
    2??) cat "$reply"; echo; exit 0 ;;
    503 | 504 | 000) [ "$attempt" -lt 5 ] || break ;;
    *) break ;;
  esac
  after=$(sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9][0-9]*\).*/\1/p' "$reply.head")
  if [ -n "$after" ]; then
    after=$(awk -v s="$after" -v cap="$cap_ms" \
      'BEGIN { print (s * 1000 > cap ? cap : s * 1000) / 1000 }')
  else
    # Half the backoff, plus a random part of the other half.
    after=$(awk -v ms="$wait_ms" -v r="$(od -An -N2 -tu2 /dev/urandom)" \
      'BEGIN { print (ms / 2 + ms / 2 * r / 65535) / 1000 }')
  fi
  sleep "$after"
  wait_ms=$((wait_ms * 2 > cap_ms ? cap_ms : wait_ms * 2))
  attempt=$((attempt + 1))
done
[ "$status" = 000 ] || echo "herald answered $status: $(cat "$reply")" >&2
exit 1
