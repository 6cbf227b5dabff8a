#!/usr/bin/env sh
# Publish to herald from a shell: everyone, one id, or one channel.
#   examples/publish.sh "Ping"            # everyone
#   examples/publish.sh "Hi" id 63        # clients registered as 63
#   examples/publish.sh "Goal" channel sport
url=${HERALD_URL:-http://127.0.0.1:8001/}
auth=
[ -n "$HERALD_KEY" ] && auth="Authorization: Bearer $HERALD_KEY"
if [ -n "$2" ]; then
  curl -sS ${auth:+-H "$auth"} "$url" --data-urlencode "message=$1" --data-urlencode "$2=$3"
else
  curl -sS ${auth:+-H "$auth"} "$url" --data-urlencode "message=$1"
fi
echo
