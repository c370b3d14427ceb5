#!/usr/bin/env bash
# scripts/import-flow.sh — the bulk import flow with nothing but curl:
#   seller token → start an import (Import API) → follow it → failed items → images
#   → one image's bytes back from its signed URL.
#
#   scripts/import-flow.sh [FOLDER_URL]
#
# FOLDER_URL is a public ("anyone with the link") Google Drive folder, or a Dropbox
# shared folder with PROVIDER=dropbox. Against the local stack with `fake-providers`
# (see README.md, "Try the import flow"), paste one of the URLs it prints.
#
# Settings (environment variables, all optional):
#   FOLDER_URL    the folder to import, instead of the argument
#   PROVIDER      google-drive or dropbox                       default google-drive
#   IMPORT_URL    Import API base URL                           default http://127.0.0.1:8083
#   APP_URL       App Service base URL (dev token issuer)       default http://127.0.0.1:8081
#   SELLER_ID     seller to act as (dev issuer)                 default demo-seller
#   TOKEN         a seller JWT to use instead of the dev issuer (e.g. from your IdP,
#                 or `cargo run --release -- token --seller ID`)
#   POLL_SECS     seconds between progress checks               default 1
#   TIMEOUT_SECS  give up following the import after this long  default 1800
#
# Needs: curl, jq, sha256sum (coreutils). Exits non-zero, printing the answer, at the
# first unexpected status, when the import fails as a whole, or when the downloaded
# image differs from what the catalog says. Items that failed are listed, not fatal
# (a real folder can hold a file the provider will not serve). CI runs it against the
# embedded stack and fake-providers (e2e/import_script.rs).

set -euo pipefail

IMPORT_URL="${IMPORT_URL:-http://127.0.0.1:8083}"
IMPORT_URL="${IMPORT_URL%/}"
APP_URL="${APP_URL:-http://127.0.0.1:8081}"
APP_URL="${APP_URL%/}"
SELLER_ID="${SELLER_ID:-demo-seller}"
PROVIDER="${PROVIDER:-google-drive}"
POLL_SECS="${POLL_SECS:-1}"
TIMEOUT_SECS="${TIMEOUT_SECS:-1800}"
FOLDER_URL="${1:-${FOLDER_URL:-}}"

for tool in curl jq sha256sum; do
    command -v "$tool" >/dev/null || {
        echo "import-flow: needs $tool (e.g. apt-get install $tool)" >&2
        exit 2
    }
done

case "$PROVIDER" in
google-drive) SOURCE=google_drive ;;
dropbox) SOURCE=dropbox ;;
*)
    echo "import-flow: PROVIDER must be google-drive or dropbox, not '$PROVIDER'" >&2
    exit 2
    ;;
esac

if [[ -z "$FOLDER_URL" ]]; then
    echo "usage: scripts/import-flow.sh FOLDER_URL   (or set FOLDER_URL; PROVIDER=dropbox for Dropbox)" >&2
    echo "  e.g. https://drive.google.com/drive/folders/<folder id>?usp=sharing" >&2
    exit 2
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

say() { printf '\n==> %s\n' "$*"; }

# call EXPECTED_STATUS curl-args… — runs curl, prints the JSON answer, checks the status.
call() {
    local expected="$1"
    shift
    call_quiet "$expected" "$@"
    jq . "$WORK/body" 2>/dev/null || cat "$WORK/body"
}

# call_quiet EXPECTED_STATUS curl-args… — the same, printing the answer only on failure.
call_quiet() {
    local expected="$1"
    shift
    local status
    status="$(curl -sS -o "$WORK/body" -w '%{http_code}' "$@")"
    if [[ "$status" != "$expected" ]]; then
        jq . "$WORK/body" 2>/dev/null || cat "$WORK/body"
        echo "import-flow: expected HTTP $expected, got $status" >&2
        exit 1
    fi
}

# ---------------------------------------------------------------- 1. a seller token

if [[ -z "${TOKEN:-}" ]]; then
    say "1. seller token for '$SELLER_ID' (POST $APP_URL/auth/token, dev issuer)"
    call_quiet 201 -X POST "$APP_URL/auth/token" \
        -H 'Content-Type: application/json' \
        -d "$(jq -n --arg s "$SELLER_ID" '{seller_id: $s}')"
    TOKEN="$(jq -r .access_token "$WORK/body")"
    echo "token for $SELLER_ID, expires $(jq -r .expires_at "$WORK/body")"
else
    say "1. seller token from \$TOKEN"
fi
AUTH=(-H "Authorization: Bearer $TOKEN")

# ---------------------------------------------------------------- 2. start the import

say "2. import $FOLDER_URL (POST $IMPORT_URL/import/$PROVIDER)"
call 202 -X POST "$IMPORT_URL/import/$PROVIDER" "${AUTH[@]}" \
    -H 'Content-Type: application/json' \
    -d "$(jq -n --arg u "$FOLDER_URL" '{folder_url: $u}')"
JOB_ID="$(jq -r .id "$WORK/body")"

# ---------------------------------------------------------------- 3. follow it

say "3. progress of import $JOB_ID (GET /imports/$JOB_ID every ${POLL_SECS} s)"
started="$(date +%s)"
last=""
while :; do
    call_quiet 200 "$IMPORT_URL/imports/$JOB_ID" "${AUTH[@]}"
    line="$(jq -r '"\(.state): \(.counts.discovered) found, \(.counts.imported) imported, \(.counts.skipped) skipped, \(.counts.failed) failed, \(.counts.in_progress) in progress; pages \(.pages.done) listed, \(.pages.pending) to list, \(.pages.failed) failed"' "$WORK/body")"
    if [[ "$line" != "$last" ]]; then
        echo "$line"
        last="$line"
    fi
    state="$(jq -r .state "$WORK/body")"
    [[ "$state" == "completed" || "$state" == "failed" ]] && break
    if (($(date +%s) - started > TIMEOUT_SECS)); then
        echo "import-flow: import $JOB_ID did not finish in $TIMEOUT_SECS s (still $state)" >&2
        exit 1
    fi
    sleep "$POLL_SECS"
done
cp "$WORK/body" "$WORK/job"
if [[ "$state" == "failed" ]]; then
    jq . "$WORK/job"
    echo "import-flow: the import failed: $(jq -r '.error.code + ": " + .error.message' "$WORK/job")" >&2
    exit 1
fi
IMPORTED="$(jq -r .counts.imported "$WORK/job")"
SKIPPED="$(jq -r .counts.skipped "$WORK/job")"
FAILED="$(jq -r .counts.failed "$WORK/job")"

say "   the same, as server-sent events (GET /imports/$JOB_ID/events): a finished import sends one 'done' event"
curl -sS -N --max-time 10 "${AUTH[@]}" "$IMPORT_URL/imports/$JOB_ID/events" |
    sed -n 's/^\(event: .*\)$/\1/p; s/^data: \(.*\)$/\1/p' |
    while IFS= read -r line; do
        if [[ "$line" == event:* ]]; then
            printf '%s  ' "$line"
        else
            jq -r '"state \(.state), \(.counts.imported) imported"' <<<"$line"
        fi
    done

# ---------------------------------------------------------------- 4. what was not imported

if ((SKIPPED > 0)); then
    say "4. skipped entries, by reason (GET /imports/$JOB_ID/items?status=skipped, first page)"
    call_quiet 200 "$IMPORT_URL/imports/$JOB_ID/items?status=skipped&limit=500" "${AUTH[@]}"
    jq -r '.items | group_by(.reason)[] | "  \(.[0].reason): \(length)"' "$WORK/body"
fi
if ((FAILED > 0)); then
    say "4. failed items (GET /imports/$JOB_ID/items?status=failed, first page); POST /imports/$JOB_ID/retry queues them again"
    call_quiet 200 "$IMPORT_URL/imports/$JOB_ID/items?status=failed&limit=100" "${AUTH[@]}"
    jq -r '.items[] | "  \(.path)/\(.name): \(.reason) (\(.attempts) attempts) \(.detail // "")"' "$WORK/body"
else
    say "4. no failed items"
fi

# ---------------------------------------------------------------- 5. the images

say "5. your imported images (GET /images?source=$SOURCE&limit=10)"
call_quiet 200 "$IMPORT_URL/images?source=$SOURCE&limit=10" "${AUTH[@]}"
jq -r '.items[] | "  \(.image_id)  \(.mime_type)  \(.width)x\(.height)  \(.size) B  \(.name)"' "$WORK/body"
jq -r 'if .next_cursor then "  … more: ?cursor=\(.next_cursor)" else empty end' "$WORK/body"
COUNT="$(jq '.items | length' "$WORK/body")"
if ((IMPORTED > 0 && COUNT == 0)); then
    echo "import-flow: $IMPORTED images imported, but GET /images lists none" >&2
    exit 1
fi

if ((COUNT > 0)); then
    IMAGE_ID="$(jq -r '.items[0].image_id' "$WORK/body")"
    say "   one image, back from its short-lived URL (GET /images/$IMAGE_ID, then its url)"
    call 200 "$IMPORT_URL/images/$IMAGE_ID" "${AUTH[@]}"
    cp "$WORK/body" "$WORK/image"
    URL="$(jq -r '.url // empty' "$WORK/image")"
    SIZE="$(jq -r .size "$WORK/image")"
    SHA256="$(jq -r .sha256 "$WORK/image")"
    [[ -n "$URL" ]] || {
        echo "import-flow: image $IMAGE_ID has no url (storage unreachable?)" >&2
        exit 1
    }
    status="$(curl -sS -o "$WORK/downloaded" -w '%{http_code}' "$URL")"
    [[ "$status" == 200 ]] || {
        echo "import-flow: GET url answered $status" >&2
        exit 1
    }
    GOT_SIZE="$(wc -c <"$WORK/downloaded" | tr -d ' ')"
    GOT_SHA256="$(sha256sum "$WORK/downloaded" | cut -d' ' -f1)"
    if [[ "$GOT_SIZE" != "$SIZE" || "$GOT_SHA256" != "$SHA256" ]]; then
        echo "import-flow: downloaded $GOT_SIZE bytes (sha256 $GOT_SHA256); the catalog says $SIZE bytes (sha256 $SHA256)" >&2
        exit 1
    fi
    echo "downloaded $GOT_SIZE bytes, sha256 $GOT_SHA256: as the catalog says"
fi

say "done: import $JOB_ID completed: $IMPORTED imported, $SKIPPED skipped, $FAILED failed"
