#!/usr/bin/env bash
# scripts/upload-flow.sh — the pre-signed upload flow with nothing but curl:
#   seller token → upload URL (App) → PUT the bytes (Storage) → product (App) → list.
#
#   scripts/upload-flow.sh [IMAGE_FILE]
#
# With no file it uploads a generated 1×1 PNG. Against the local stack (`cargo run
# --release`) it needs no settings: the token comes from the dev issuer
# (`POST /auth/token`, on in the embedded stack).
#
# Settings (environment variables, all optional):
#   APP_URL     App Service base URL                  default http://127.0.0.1:8081
#   SELLER_ID   seller to act as (dev issuer)         default demo-seller
#   TOKEN       a seller JWT to use instead of the dev issuer (e.g. from your IdP,
#               or `cargo run --release -- token --seller ID`)
#   CONTENT_TYPE  the image's type                    default from the file name
#
# Needs: curl, jq, sha256sum (coreutils). Exits non-zero, printing the answer, at the
# first unexpected status. CI runs it against the embedded stack (e2e/curl_script.rs).

set -euo pipefail

APP_URL="${APP_URL:-http://127.0.0.1:8081}"
APP_URL="${APP_URL%/}"
SELLER_ID="${SELLER_ID:-demo-seller}"

for tool in curl jq sha256sum; do
    command -v "$tool" >/dev/null || {
        echo "upload-flow: needs $tool (e.g. apt-get install $tool)" >&2
        exit 2
    }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

say() { printf '\n==> %s\n' "$*"; }

# call EXPECTED_STATUS curl-args… — runs curl, prints the JSON answer, checks the status.
call() {
    local expected="$1"
    shift
    local status
    status="$(curl -sS -o "$WORK/body" -w '%{http_code}' "$@")"
    if [[ -s "$WORK/body" ]]; then
        jq . "$WORK/body" 2>/dev/null || cat "$WORK/body"
    fi
    if [[ "$status" != "$expected" ]]; then
        echo "upload-flow: expected HTTP $expected, got $status" >&2
        exit 1
    fi
}

# ---------------------------------------------------------------- the image

IMAGE="${1:-}"
if [[ -z "$IMAGE" ]]; then
    IMAGE="$WORK/pixel.png"
    # A valid 1×1 PNG.
    echo 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==' |
        base64 -d >"$IMAGE"
fi
[[ -f "$IMAGE" ]] || {
    echo "upload-flow: no such file: $IMAGE" >&2
    exit 2
}
if [[ -z "${CONTENT_TYPE:-}" ]]; then
    case "${IMAGE,,}" in
    *.png) CONTENT_TYPE=image/png ;;
    *.jpg | *.jpeg) CONTENT_TYPE=image/jpeg ;;
    *.webp) CONTENT_TYPE=image/webp ;;
    *.gif) CONTENT_TYPE=image/gif ;;
    *.avif) CONTENT_TYPE=image/avif ;;
    *)
        echo "upload-flow: cannot tell the type of $IMAGE; set CONTENT_TYPE" >&2
        exit 2
        ;;
    esac
fi
SIZE="$(wc -c <"$IMAGE" | tr -d ' ')"
SHA256="$(sha256sum "$IMAGE" | cut -d' ' -f1)"
FILENAME="$(basename "$IMAGE")"

# ---------------------------------------------------------------- 1. a seller token

if [[ -z "${TOKEN:-}" ]]; then
    say "1. seller token for '$SELLER_ID' (POST $APP_URL/auth/token, dev issuer)"
    call 201 -X POST "$APP_URL/auth/token" \
        -H 'Content-Type: application/json' \
        -d "$(jq -n --arg s "$SELLER_ID" '{seller_id: $s}')"
    TOKEN="$(jq -r .access_token "$WORK/body")"
else
    say "1. seller token from \$TOKEN"
fi
AUTH=(-H "Authorization: Bearer $TOKEN")

# ---------------------------------------------------------------- 2. an upload URL

say "2. upload URL for $FILENAME ($SIZE bytes, $CONTENT_TYPE) (POST /uploads)"
call 201 -X POST "$APP_URL/uploads" "${AUTH[@]}" \
    -H 'Content-Type: application/json' \
    -d "$(jq -n --arg f "$FILENAME" --arg t "$CONTENT_TYPE" --argjson s "$SIZE" --arg h "$SHA256" \
        '{filename: $f, content_type: $t, size: $s, sha256: $h}')"
cp "$WORK/body" "$WORK/ticket"
UPLOAD_URL="$(jq -r .upload_url "$WORK/ticket")"
UPLOAD_METHOD="$(jq -r .method "$WORK/ticket")"
HEADERS=()
while IFS=$'\t' read -r name value; do
    HEADERS+=(-H "$name: $value")
done < <(jq -r '.headers | to_entries[] | "\(.key)\t\(.value)"' "$WORK/ticket")

# ---------------------------------------------------------------- 3. the bytes

say "3. the bytes, straight to storage ($UPLOAD_METHOD upload_url)"
call 201 -X "$UPLOAD_METHOD" "${HEADERS[@]}" --data-binary "@$IMAGE" "$UPLOAD_URL"
IMAGE_ID="$(jq -r .image_id "$WORK/body")"

say "   the same URL a second time is refused (single use)"
call 409 -X "$UPLOAD_METHOD" "${HEADERS[@]}" --data-binary "@$IMAGE" "$UPLOAD_URL"

# ---------------------------------------------------------------- 4. a product

IDEMPOTENCY_KEY="upload-flow-$(date +%s)-$RANDOM"
PRODUCT="$(jq -n --arg i "$IMAGE_ID" \
    '{name: "Demo product", description: "Created by scripts/upload-flow.sh", price_minor: 1999, currency: "EUR", image_id: $i}')"
say "4. product with image $IMAGE_ID (POST /product, Idempotency-Key: $IDEMPOTENCY_KEY)"
call 201 -X POST "$APP_URL/product" "${AUTH[@]}" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $IDEMPOTENCY_KEY" -d "$PRODUCT"
PRODUCT_ID="$(jq -r .id "$WORK/body")"

say "   retried with the same Idempotency-Key: the same product, not a second one"
call 201 -X POST "$APP_URL/product" "${AUTH[@]}" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $IDEMPOTENCY_KEY" -d "$PRODUCT"
[[ "$(jq -r .id "$WORK/body")" == "$PRODUCT_ID" ]] || {
    echo "upload-flow: the retry created another product" >&2
    exit 1
}

# ---------------------------------------------------------------- 5. the list

say "5. your products (GET /products)"
call 200 "$APP_URL/products?limit=5" "${AUTH[@]}"
jq -e --arg p "$PRODUCT_ID" '.items | any(.id == $p)' "$WORK/body" >/dev/null || {
    echo "upload-flow: product $PRODUCT_ID is not in the list" >&2
    exit 1
}

IMAGE_URL="$(jq -r --arg p "$PRODUCT_ID" '.items[] | select(.id == $p) | .image_url // empty' "$WORK/body")"
if [[ -n "$IMAGE_URL" ]]; then
    say "   the image, back from its short-lived URL"
    curl -sS -o "$WORK/downloaded" "$IMAGE_URL"
    cmp -s "$WORK/downloaded" "$IMAGE" || {
        echo "upload-flow: the downloaded image differs from the upload" >&2
        exit 1
    }
    echo "identical to $IMAGE ($SIZE bytes)"
fi

say "done: image $IMAGE_ID, product $PRODUCT_ID"
