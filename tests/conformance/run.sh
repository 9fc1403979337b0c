#!/usr/bin/env bash
# postern conformance: runs the real broker and checks what it produces with independent
# tools (openssl 3, pkilint, curl, jq, Python jwcrypto), drives its ACME server with certbot and
# its SCIM service provider with scim2-tester and scim-sanity.
#
#   bash tests/conformance/run.sh
#
# Environment:
#   POSTERN_BIN        use this broker binary instead of building target/release/postern
#   CONFORMANCE_OUT    where keys, CSRs, certificates, responses and logs go
#                      (default tests/conformance/out, gitignored; emptied on each run)
#   CONFORMANCE_KEEP=1 keep the broker's temporary data directory
#   VERBOSE=1          print each check's output on PASS too
#
# Every check prints "PASS <name>" or "FAIL <name>" (with the tool output), or "SKIP <name>: why"
# when this broker lacks what it checks; the last line is
# "conformance: N passed, M failed", and the exit status is non-zero when M > 0.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${CONFORMANCE_OUT:-$HERE/out}
VENV=$HERE/.venv
export DEBIAN_FRONTEND=noninteractive

PASSED=0
FAILED=0
FAILED_NAMES=()
BROKER_PID=
DATA=
TOKEN=
P_HTTPS=
P_HTTP=
P_ACME=
CONFIG=
STARTED=$(date +%s)

step() { printf '\n=== %s ===\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
    printf 'conformance: fatal: %s\n' "$*" >&2
    exit 2
}

# check NAME COMMAND [ARGS...]: runs the command in this shell (so it can set variables),
# output captured; exit status 0 is a pass.
check() {
    local name=$1
    shift
    local log rc=0
    log=$(mktemp "${TMPDIR:-/tmp}/postern-check.XXXXXX")
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        PASSED=$((PASSED + 1))
        printf 'PASS  %s\n' "$name"
        if [ "${VERBOSE:-0}" = 1 ] && [ -s "$log" ]; then sed 's/^/        /' "$log"; fi
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$name")
        printf 'FAIL  %s (exit %s)\n' "$name" "$rc"
        sed 's/^/        /' "$log"
    fi
    rm -f "$log"
    return 0
}

# skip NAME REASON: a check that cannot run against this broker, with why
SKIPPED_NAMES=()
skip() {
    SKIPPED_NAMES+=("$1: $2")
    printf 'SKIP  %s: %s\n' "$1" "$2"
}

# assertion helpers for check bodies: they print what they saw and return 1
expect_grep() { # TEXT PATTERN(ERE) WHAT
    if ! grep -Eq -- "$2" <<<"$1"; then
        printf 'expected %s (/%s/) in:\n%s\n' "$3" "$2" "$1"
        return 1
    fi
}
expect_no_grep() { # TEXT PATTERN(ERE) WHAT
    if grep -Eq -- "$2" <<<"$1"; then
        printf 'did not expect %s (/%s/) in:\n%s\n' "$3" "$2" "$1"
        return 1
    fi
}
expect_eq() { # GOT WANT WHAT
    if [ "$1" != "$2" ]; then
        printf '%s: got %q, want %q\n' "$3" "$1" "$2"
        return 1
    fi
}

run_show() { # print the command and its combined output; return its status
    printf '$ %s\n' "$*"
    "$@" 2>&1
}

# ---------------------------------------------------------------------------------------------
# tools

SUDO=
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi
APT_UPDATED=0
apt_install() { # PACKAGE...
    command -v apt-get >/dev/null 2>&1 || die "missing $*, and there is no apt-get to install it"
    if [ "$APT_UPDATED" = 0 ]; then
        $SUDO apt-get update -qq </dev/null
        APT_UPDATED=1
    fi
    $SUDO apt-get install -y -qq --no-install-recommends "$@" </dev/null >/dev/null
}

ensure_tools() {
    local missing=() tool pkg
    for tool in openssl:openssl curl:curl jq:jq python3:python3 base64:coreutils; do
        pkg=${tool#*:}
        tool=${tool%%:*}
        command -v "$tool" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        info "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    # pkilint (and h2, for the HTTP/2 probe, and certbot, the ACME client) in a venv; idempotent
    if [ -x "$VENV/bin/lint_pkix_cert" ] && [ -x "$VENV/bin/certbot" ] &&
        "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(not (m.version("pkilint").startswith("0.13.") and m.version("h2").startswith("4.") and m.version("certbot").startswith("5.") and m.version("jwcrypto").startswith("1.") and m.version("scim2-tester") == "0.5.2" and m.version("scim2-cli") == "0.6.0" and m.version("scim-sanity") == "0.7.4"))' 2>/dev/null; then
        :
    else
        if ! "$VENV/bin/python" -c '' 2>/dev/null; then
            rm -rf "$VENV" # absent, or made by a Python that is gone
            if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
                rm -rf "$VENV"
                info "installing python3-venv"
                apt_install python3-venv
                python3 -m venv "$VENV"
            fi
        fi
        info "installing pkilint 0.13.x, h2 4.x, certbot 5.x, jwcrypto 1.x, scim2-tester 0.5.2, scim2-cli 0.6.0 and scim-sanity 0.7.4 into $VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check 'pkilint>=0.13,<0.14' 'h2>=4,<5' 'certbot>=5,<6' 'jwcrypto>=1.5,<2' \
            'scim2-tester==0.5.2' 'scim2-cli==0.6.0' 'scim-sanity==0.7.4' </dev/null
    fi
    info "$(openssl version)"
    info "pkilint $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pkilint"))')"
    info "$("$VENV/bin/certbot" --version 2>&1)"
    info "jwcrypto $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("jwcrypto"))')"
    info "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(", ".join(p + " " + m.version(p) for p in ("scim2-tester", "scim2-cli", "scim-sanity")))')"
    info "$(curl --version | head -1)"
    info "$(jq --version)"
}

# ---------------------------------------------------------------------------------------------
# broker process

cleanup() {
    local rc=$?
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    if [ -n "$DATA" ] && [ -d "$DATA" ]; then
        if [ "${CONFORMANCE_KEEP:-0}" = 1 ]; then
            echo "conformance: data directory kept at $DATA" >&2
        else
            rm -rf "$DATA"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_ports() { # COUNT
    python3 -c 'import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks: s.close()' "$1"
}

# start_broker LOGNAME: starts `postern serve` in the background
start_broker() {
    local name=$1
    POSTERN_ADMIN_TOKEN=$TOKEN POSTERN_LOG_FORMAT=text RUST_LOG=${RUST_LOG:-info} \
        "$POSTERN" serve --data-dir "$DATA" ${CONFIG:+--config "$CONFIG"} \
        --listen "127.0.0.1:$P_HTTPS" --http-listen "127.0.0.1:$P_HTTP" \
        >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" </dev/null &
    BROKER_PID=$!
    info "broker pid $BROKER_PID (logs: $OUT/$name.stdout, $OUT/$name.stderr)"
}

# wait_healthy LOGNAME: polls https /healthz for up to 30 s
wait_healthy() {
    local name=$1 i
    for i in $(seq 1 150); do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "the broker exited before it became healthy; stderr:"
            cat "$OUT/$name.stderr"
            echo "stdout:"
            cat "$OUT/$name.stdout"
            return 1
        fi
        if [ -s "$DATA/ca/root.pem" ] &&
            curl -sSf --max-time 2 --cacert "$DATA/ca/root.pem" -o /dev/null \
                "https://127.0.0.1:$P_HTTPS/healthz" 2>/dev/null; then
            echo "healthy after ~$((i / 5)) s"
            return 0
        fi
        sleep 0.2
    done
    echo "no healthy /healthz within 30 s; broker stderr:"
    cat "$OUT/$name.stderr"
    return 1
}

stop_broker() { # SIGNAL: signals the broker and waits up to 20 s; prints its exit status
    local sig=$1 rc=0 i
    [ -n "$BROKER_PID" ] || return 0
    kill "-$sig" "$BROKER_PID" 2>/dev/null || true
    for i in $(seq 1 200); do
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "the broker did not exit within 20 s of SIG$sig; killing it"
        kill -KILL "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=
        return 1
    fi
    wait "$BROKER_PID" 2>/dev/null || rc=$?
    BROKER_PID=
    echo "broker exited with status $rc after SIG$sig"
    STOP_STATUS=$rc
}

# ---------------------------------------------------------------------------------------------
# HTTP

HTTP_STATUS=
HTTP_CT=
# http METHOD URL OUTFILE [curl args...]: sets HTTP_STATUS and HTTP_CT (000 when no response)
http() {
    local method=$1 url=$2 out=$3 meta
    shift 3
    if meta=$(curl -sS --max-time 20 -X "$method" -o "$out" -w '%{http_code}\t%{content_type}' \
        --cacert "$DATA/ca/root.pem" "$@" "$url"); then
        HTTP_STATUS=${meta%%$'\t'*}
        HTTP_CT=${meta#*$'\t'}
    else
        HTTP_STATUS=000
        HTTP_CT=
        : >>"$out"
    fi
}
https_url() { printf 'https://127.0.0.1:%s%s' "$P_HTTPS" "$1"; }
plain_url() { printf 'http://127.0.0.1:%s%s' "$P_HTTP" "$1"; }
admin() { # METHOD PATH OUTFILE [curl args...]
    local method=$1 path=$2 out=$3
    shift 3
    http "$method" "$(https_url "$path")" "$out" -H "Authorization: Bearer $TOKEN" "$@"
}
show_response() { # FILE
    printf 'HTTP %s, content-type %s, body:\n' "$HTTP_STATUS" "$HTTP_CT"
    head -c 2000 "$1"
    echo
}

audit_count() {
    local f
    f=$(mktemp "$OUT/audit.XXXXXX.json")
    admin GET "/v1/admin/audit?from=1&limit=1000" "$f"
    if [ "$HTTP_STATUS" != 200 ]; then
        show_response "$f" >&2
        echo "audit-unavailable"
        return 0
    fi
    jq length "$f" 2>/dev/null || echo "audit-unparseable"
}

# ---------------------------------------------------------------------------------------------
# PKI helpers

fingerprint() { # PEM-FILE: SHA-256 of the first certificate, lower-case hex without colons
    openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^.*=//; s/://g' | tr 'A-F' 'a-f'
}
first_cert() { # IN OUT: the first certificate of a PEM bundle
    openssl x509 -in "$1" -out "$2"
}
have_leaf() { [ -s "$OUT/leaf-$1.pem" ]; }
ext_values() { # CERT EXTNAME: the value lines of one extension (empty when absent)
    openssl x509 -in "$1" -noout -ext "$2" 2>/dev/null | sed '1d; s/^ *//'
}
serial_upper() { tr 'a-f' 'A-F' <<<"$1"; }
strip0() { # hex without leading zeros
    local s=$1
    while [ "${s#0}" != "$s" ]; do s=${s#0}; done
    printf '%s' "$s"
}

# issue LABEL PROFILE CSR NAMES-JSON|null CN|"" : POST /v1/admin/certificates; on 201 writes
# leaf-LABEL.pem, leaf-LABEL.chain.pem, leaf-LABEL.json
issue() {
    local label=$1 profile=$2 csr=$3 names=$4 cn=$5 body
    body=$OUT/leaf-$1.request.json
    jq -n --rawfile csr "$csr" --arg profile "$profile" --argjson names "$names" --arg cn "$cn" \
        '{csr: $csr, profile: $profile}
         + (if $names == null then {} else {names: $names} end)
         + (if $cn == "" then {} else {common_name: $cn} end)' >"$body"
    admin POST /v1/admin/certificates "$OUT/leaf-$label.json" \
        -H 'Content-Type: application/json' --data-binary "@$body"
    if [ "$HTTP_STATUS" != 201 ]; then
        echo "POST /v1/admin/certificates ($profile, $label) failed"
        show_response "$OUT/leaf-$label.json"
        return 1
    fi
    jq -r .certificate_pem "$OUT/leaf-$label.json" >"$OUT/leaf-$label.pem"
    jq -r .chain_pem "$OUT/leaf-$label.json" >"$OUT/leaf-$label.chain.pem"
    local serial status leaf_serial
    serial=$(jq -r .serial "$OUT/leaf-$label.json")
    status=$(jq -r .status "$OUT/leaf-$label.json")
    leaf_serial=$(openssl x509 -in "$OUT/leaf-$label.pem" -noout -serial | sed 's/^serial=//' | tr 'A-F' 'a-f')
    echo "issued $label: serial $serial, names $(jq -c .names "$OUT/leaf-$label.json")"
    expect_eq "$status" good "status" || return 1
    # the API serial is the certificate's serial (lower-case hex; compare without leading zeros)
    expect_eq "$(strip0 "$serial")" "$(strip0 "$leaf_serial")" \
        "API serial vs certificate serial" || return 1
    # chain_pem = leaf + issuing CA
    local n
    n=$(grep -c 'BEGIN CERTIFICATE' "$OUT/leaf-$label.chain.pem")
    expect_eq "$n" 2 "certificates in chain_pem" || return 1
    expect_eq "$(fingerprint "$OUT/leaf-$label.chain.pem")" "$(fingerprint "$OUT/leaf-$label.pem")" \
        "first certificate of chain_pem" || return 1
    openssl crl2pkcs7 -nocrl -certfile "$OUT/leaf-$label.chain.pem" |
        openssl pkcs7 -print_certs 2>/dev/null | awk '/BEGIN/{n++} n==2' >"$OUT/leaf-$label.chain2.pem"
    expect_eq "$(fingerprint "$OUT/leaf-$label.chain2.pem")" "$(fingerprint "$OUT/issuing-only.pem")" \
        "second certificate of chain_pem (the issuing CA)" || return 1
}

verify_leaf() { # LABEL [PURPOSE]
    local label=$1 purpose=${2:-} out
    local args=(-CAfile "$OUT/root.pem" -untrusted "$OUT/issuing.pem")
    [ -n "$purpose" ] && args+=(-purpose "$purpose")
    out=$(openssl verify "${args[@]}" "$OUT/leaf-$label.pem" 2>&1) || {
        echo "$out"
        return 1
    }
    echo "$out"
    expect_grep "$out" ": OK$" "verify OK"
}

KNOWN_DIVERGENCES=$HERE/pkilint-known-divergences.txt
pkilint_cert() { # FILE: no finding at WARNING or above, except the documented known divergences
    local out findings unexpected
    out=$("$VENV/bin/lint_pkix_cert" lint -s WARNING "$1" 2>&1) && { echo "$out"; return 0; }
    echo "$out"
    findings=$(grep -E '\((WARNING|ERROR|FATAL)\):' <<<"$out" | sed -E 's/^[[:space:]]+//') || {
        echo "pkilint failed without a finding line"
        return 1
    }
    unexpected=$(grep -v -E -f <(grep -v -E '^(#|$)' "$KNOWN_DIVERGENCES") <<<"$findings") || true
    if [ -n "$unexpected" ]; then
        echo "findings not in $KNOWN_DIVERGENCES:"
        echo "$unexpected"
        return 1
    fi
    echo "every finding is a documented known divergence ($KNOWN_DIVERGENCES)"
}
pkilint_leaf() { # LABEL
    have_leaf "$1" || { echo "no certificate was issued for $1"; return 1; }
    pkilint_cert "$OUT/leaf-$1.pem"
}
pkilint_chain() { # ISSUER SUBJECT
    run_show "$VENV/bin/lint_pkix_signer_signee_cert_chain" lint -s WARNING "$1" "$2"
}

# ---------------------------------------------------------------------------------------------
# per-profile expectations (step 3)

exts_device() {
    local c=$OUT/leaf-device.pem san ku eku asn
    san=$(ext_values "$c" subjectAltName)
    ku=$(ext_values "$c" keyUsage)
    eku=$(ext_values "$c" extendedKeyUsage)
    printf 'SAN: %s\nKU: %s\nEKU: %s\n' "$san" "$ku" "$eku"
    expect_grep "$san" '(1\.3\.6\.1\.5\.5\.7\.8\.3|Permanent Identifier)' "the permanent-identifier otherName" || return 1
    expect_eq "$ku" "Digital Signature" "keyUsage" || return 1
    expect_eq "$eku" "TLS Web Client Authentication" "extendedKeyUsage" || return 1
    # the otherName (RFC 4043): [0] { type-id id-on-permanentIdentifier,
    #   value [0] EXPLICIT PermanentIdentifier ::= SEQUENCE { identifierValue UTF8String, ... } }
    local off
    off=$(openssl asn1parse -in "$c" | awk '/:X509v3 Subject Alternative Name/ { getline; split($1, a, ":"); print a[1]; exit }')
    [ -n "$off" ] || { echo "no subjectAltName in the DER"; return 1; }
    asn=$(openssl asn1parse -in "$c" -strparse "$off" 2>&1)
    echo "$asn"
    expect_grep "$asn" 'OBJECT +:Permanent Identifier' "the id-on-permanentIdentifier OID" || return 1
    expect_grep "$asn" 'UTF8STRING +:C02XK0AAJGH5$' "the identifierValue C02XK0AAJGH5" || return 1
}

exts_messaging() { # LABEL
    local c=$OUT/leaf-$1.pem san ku eku
    san=$(ext_values "$c" subjectAltName)
    ku=$(ext_values "$c" keyUsage)
    eku=$(ext_values "$c" extendedKeyUsage)
    printf 'SAN: %s\nKU: %s\nEKU: %s\n' "$san" "$ku" "$eku"
    expect_grep "$san" 'URI:tel:\+4915112345678' "URI:tel:+4915112345678" || return 1
    expect_grep "$san" 'URI:urn:postern:device:abc' "URI:urn:postern:device:abc" || return 1
    expect_eq "$ku" "Digital Signature" "keyUsage (digitalSignature only)" || return 1
    expect_eq "$eku" "" "extendedKeyUsage (must be absent)" || return 1
}

exts_tls() { # LABEL SAN-REGEX...
    local label=$1 c=$OUT/leaf-$1.pem san ku eku re
    shift
    san=$(ext_values "$c" subjectAltName)
    ku=$(ext_values "$c" keyUsage)
    eku=$(ext_values "$c" extendedKeyUsage)
    printf 'SAN: %s\nKU: %s\nEKU: %s\n' "$san" "$ku" "$eku"
    for re in "$@"; do expect_grep "$san" "$re" "$re" || return 1; done
    expect_grep "$ku" 'Digital Signature' "keyUsage digitalSignature" || return 1
    expect_eq "$eku" "TLS Web Server Authentication" "extendedKeyUsage" || return 1
}

exts_gateway() {
    local c=$OUT/leaf-gateway.pem san ku eku start end days
    san=$(ext_values "$c" subjectAltName)
    ku=$(ext_values "$c" keyUsage)
    eku=$(ext_values "$c" extendedKeyUsage)
    printf 'SAN: %s\nKU: %s\nEKU: %s\n' "$san" "$ku" "$eku"
    expect_eq "$san" "URI:$GATEWAY_URN, DNS:gw.example.com" "subjectAltName (from the CSR)" || return 1
    expect_eq "$ku" "Digital Signature" "keyUsage" || return 1
    expect_eq "$eku" "TLS Web Client Authentication" "extendedKeyUsage (clientAuth only)" || return 1
    start=$(openssl x509 -in "$c" -noout -startdate | sed 's/^notBefore=//')
    end=$(openssl x509 -in "$c" -noout -enddate | sed 's/^notAfter=//')
    days=$((($(date -d "$end" +%s) - $(date -d "$start" +%s)) / 86400))
    echo "validity: $start .. $end ($days days)"
    expect_eq "$days" 30 "default validity in days" || return 1
}

exts_ocsp_signer() {
    local c=$OUT/leaf-ocsp-signer.pem ku eku text
    ku=$(ext_values "$c" keyUsage)
    eku=$(ext_values "$c" extendedKeyUsage)
    text=$(openssl x509 -in "$c" -noout -text)
    printf 'KU: %s\nEKU: %s\n' "$ku" "$eku"
    expect_eq "$ku" "Digital Signature" "keyUsage" || return 1
    expect_eq "$eku" "OCSP Signing" "extendedKeyUsage" || return 1
    expect_grep "$text" 'OCSP No Check' "the id-pkix-ocsp-nocheck extension" || return 1
    expect_grep "$text" 'Subject:.*CN *= *postern conformance OCSP signer' "the requested commonName" || return 1
}

exts_common() { # LABEL: CRL DP and AIA OCSP point at the plain listener; CA:FALSE
    local c=$OUT/leaf-$1.pem dp aia bc
    dp=$(ext_values "$c" crlDistributionPoints)
    aia=$(ext_values "$c" authorityInfoAccess)
    bc=$(ext_values "$c" basicConstraints)
    printf 'CRL DP: %s\nAIA: %s\nBC: %s\n' "$dp" "$aia" "$bc"
    expect_grep "$dp" "URI:http://127\.0\.0\.1:$P_HTTP/pki/crl\$" "the CRL distribution point" || return 1
    if [ "$1" = ocsp-signer ] && ! grep -q 'OCSP - URI' <<<"$aia"; then
        # a delegated responder certificate with id-pkix-ocsp-nocheck: clients do not check
        # its status, so an OCSP URL is not needed (RFC 6960 section 4.2.2.2.1)
        echo "(no AIA OCSP URL on the ocsp-nocheck responder certificate)"
    else
        expect_grep "$aia" "OCSP - URI:http://127\.0\.0\.1:$P_HTTP/pki/ocsp\$" "the AIA OCSP URL" || return 1
    fi
    expect_no_grep "$bc" 'CA:TRUE' "CA:TRUE on a leaf" || return 1
}

# ---------------------------------------------------------------------------------------------
# checks used in several steps

ocsp_query() { # LABEL-OF-OUTPUT EXPECTED(good|revoked|unknown) CERT [extra openssl args]
    local name=$1 want=$2 cert=$3 out
    shift 3
    out=$(openssl ocsp -issuer "$OUT/issuing-only.pem" -cert "$cert" \
        -url "$(plain_url /pki/ocsp)" -CAfile "$OUT/root.pem" -resp_text \
        -respout "$OUT/ocsp-$name.der" "$@" 2>&1) || {
        echo "$out"
        return 1
    }
    echo "$out"
    expect_grep "$out" 'Response verify OK' "Response verify OK" || return 1
    expect_grep "$out" ": $want\$" ": $want" || return 1
    expect_no_grep "$out" 'WARNING: no nonce in response' "the no-nonce warning" || return 1
    expect_no_grep "$out" 'nonce verify error|Nonce Verify error' "a nonce mismatch" || return 1
}

check_revoked_api() { # LABEL
    local serial
    serial=$(jq -r .serial "$OUT/leaf-$1.json")
    admin GET "/v1/admin/certificates/$serial" "$OUT/get-$1.json"
    show_response "$OUT/get-$1.json"
    expect_eq "$HTTP_STATUS" 200 "HTTP status" || return 1
    expect_eq "$(jq -r .status "$OUT/get-$1.json")" revoked "status" || return 1
    expect_eq "$(jq -r .revocation_reason "$OUT/get-$1.json")" keyCompromise "revocation_reason" || return 1
    expect_grep "$(jq -r .revoked_at "$OUT/get-$1.json")" '^[0-9]{4}-' "revoked_at" || return 1
}

# ---------------------------------------------------------------------------------------------
step "0. tools"
ensure_tools
if [ "$OUT" != "$HERE/out" ] && [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -e "$OUT/.conformance-out" ]; then
    die "$OUT is not empty and was not made by this script; set CONFORMANCE_OUT elsewhere"
fi
rm -rf "$OUT"
mkdir -p "$OUT"
touch "$OUT/.conformance-out"

step "1. build"
if [ -n "${POSTERN_BIN:-}" ]; then
    [ -x "$POSTERN_BIN" ] || die "POSTERN_BIN=$POSTERN_BIN is not an executable"
    POSTERN=$POSTERN_BIN
    info "using POSTERN_BIN=$POSTERN"
else
    (cd "$ROOT" && cargo build --release --locked -p postern-broker)
    POSTERN=${CARGO_TARGET_DIR:-$ROOT/target}/release/postern
    case $POSTERN in /*) ;; *) POSTERN=$ROOT/$POSTERN ;; esac
fi
info "$("$POSTERN" --version)"

step "2. start the broker"
read -r P_HTTPS P_HTTP P_ACME < <(free_ports 3)
DATA=$(mktemp -d "${TMPDIR:-/tmp}/postern-conformance.XXXXXX")
# (an empty directory: the broker fills it on first start)
TOKEN=$(openssl rand -hex 24)
# ACME http-01 validation connects to P_ACME, where certbot's standalone server answers (step
# 6b); gw.test resolves to loopback without DNS
CONFIG=$OUT/postern.toml
cat >"$CONFIG" <<EOF
[acme]
http01_port = $P_ACME
http01_hosts = { "gw.test" = "127.0.0.1" }
EOF
info "data dir $DATA, https 127.0.0.1:$P_HTTPS, http 127.0.0.1:$P_HTTP, http-01 127.0.0.1:$P_ACME"
start_broker broker
check "broker becomes healthy on https /healthz" wait_healthy broker
if ! kill -0 "$BROKER_PID" 2>/dev/null || [ ! -s "$DATA/ca/root.pem" ]; then
    printf '\nconformance: %s passed, %s failed\n' "$PASSED" "$FAILED"
    exit 1
fi
cp "$DATA/ca/root.pem" "$OUT/root.pem"
cp "$DATA/ca/issuing.pem" "$OUT/issuing.pem"
first_cert "$OUT/issuing.pem" "$OUT/issuing-only.pem"
first_cert "$DATA/tls/server.pem" "$OUT/tls-server-cert.pem"
ROOT_FP_BEFORE=$(fingerprint "$OUT/root.pem")
info "root sha256 $ROOT_FP_BEFORE"

startup_banner() {
    cat "$OUT/broker.stdout"
    expect_grep "$(cat "$OUT/broker.stdout")" 'postern is running' "the startup banner"
}
check "stdout says 'postern is running'" startup_banner

dev_ca_files() {
    local text
    text=$(openssl x509 -in "$OUT/root.pem" -noout -text)
    expect_grep "$text" 'ASN1 OID: secp384r1' "a P-384 root key" || return 1
    expect_grep "$text" 'CA:TRUE' "CA:TRUE on the root" || return 1
    expect_eq "$(grep -c 'BEGIN CERTIFICATE' "$OUT/issuing.pem")" 2 "certificates in ca/issuing.pem" || return 1
    # the second certificate of issuing.pem is the root
    openssl crl2pkcs7 -nocrl -certfile "$OUT/issuing.pem" | openssl pkcs7 -print_certs 2>/dev/null |
        awk '/BEGIN/{n++} n==2' >"$OUT/issuing-second.pem"
    expect_eq "$(fingerprint "$OUT/issuing-second.pem")" "$ROOT_FP_BEFORE" "second certificate of ca/issuing.pem" || return 1
    run_show openssl verify -CAfile "$OUT/root.pem" "$OUT/issuing-only.pem" || return 1
}
check "dev CA: P-384 root, ca/issuing.pem = issuing CA + root, issuing verifies" dev_ca_files

tls_server_chain() {
    run_show openssl verify -purpose sslserver -CAfile "$OUT/root.pem" -untrusted "$OUT/issuing.pem" \
        "$OUT/tls-server-cert.pem" || return 1
    local san
    san=$(ext_values "$OUT/tls-server-cert.pem" subjectAltName)
    echo "SAN: $san"
    expect_grep "$san" 'DNS:localhost' "DNS:localhost" || return 1
    expect_grep "$san" 'IP Address:127\.0\.0\.1' "IP:127.0.0.1" || return 1
    expect_grep "$san" 'IP Address:0:0:0:0:0:0:0:1' "IP:::1" || return 1
}
check "tls/server.pem verifies for sslserver with localhost/127.0.0.1/::1" tls_server_chain

pki_endpoints() {
    local f=$OUT/pki-ca.pem
    http GET "$(https_url /pki/ca/root.pem)" "$OUT/pki-root.pem"
    expect_eq "$HTTP_STATUS" 200 "GET /pki/ca/root.pem" || return 1
    expect_eq "$(fingerprint "$OUT/pki-root.pem")" "$ROOT_FP_BEFORE" "/pki/ca/root.pem fingerprint" || return 1
    http GET "$(https_url /pki/ca)" "$f"
    expect_eq "$HTTP_STATUS" 200 "GET /pki/ca" || return 1
    expect_eq "$(grep -c 'BEGIN CERTIFICATE' "$f")" 2 "certificates in /pki/ca" || return 1
    expect_eq "$(fingerprint "$f")" "$(fingerprint "$OUT/issuing-only.pem")" "first certificate of /pki/ca" || return 1
    http GET "$(plain_url /pki/issuing.crt)" "$OUT/pki-issuing.der"
    expect_eq "$HTTP_STATUS" 200 "GET http /pki/issuing.crt" || return 1
    expect_eq "$HTTP_CT" "application/pkix-cert" "content-type of /pki/issuing.crt" || return 1
    openssl x509 -inform DER -in "$OUT/pki-issuing.der" -out "$OUT/pki-issuing.pem" || return 1
    expect_eq "$(fingerprint "$OUT/pki-issuing.pem")" "$(fingerprint "$OUT/issuing-only.pem")" "/pki/issuing.crt" || return 1
    http GET "$(plain_url /healthz)" "$OUT/plain-health.json"
    expect_eq "$HTTP_STATUS" 200 "GET http /healthz" || return 1
    http GET "$(https_url /readyz)" "$OUT/readyz.json"
    expect_eq "$HTTP_STATUS" 200 "GET https /readyz" || return 1
    echo "ok"
}
check "PKI endpoints serve the CA certificates (/pki/ca, /pki/ca/root.pem, /pki/issuing.crt, /readyz)" pki_endpoints

AUDIT_AT_START=$(audit_count)
info "audit entries at start: $AUDIT_AT_START"

# ---------------------------------------------------------------------------------------------
step "3. issue one certificate per profile"
K=$OUT/keys
mkdir -p "$K"
p256() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$K/$1.key" 2>/dev/null; }
p256 device
p256 msg-p256
p256 tls-p256
p256 tls-ski
p256 gateway
p256 ocsp-signer
openssl genpkey -algorithm ED25519 -out "$K/msg-ed25519.key"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$K/tls-rsa.key" 2>/dev/null
csr() { # LABEL SUBJECT [openssl req args...]
    local label=$1 subj=$2
    shift 2
    openssl req -new -key "$K/$label.key" -subj "$subj" -out "$K/$label.csr" "$@"
}
csr device "/CN=C02XK0AAJGH5"
csr msg-p256 "/CN=alice" -addext "subjectAltName=URI:tel:+4915112345678,URI:urn:postern:device:abc"
csr msg-ed25519 "/CN=alice-ed25519"
csr tls-p256 "/CN=host.example"
csr tls-rsa "/CN=rsa.example"
# a real-world CSR: SANs plus a subjectKeyIdentifier request, no names in the API call
csr tls-ski "/CN=ski.example" -addext "subjectAltName=DNS:ski.example,IP:127.0.0.1" \
    -addext "subjectKeyIdentifier=hash"
# the gateway names itself in its CSR: urn:postern:gateway:<tenant>:<name>, plus a host name
GATEWAY_URN=urn:postern:gateway:default:gw-conformance
csr gateway "/CN=gw-conformance" -addext "subjectAltName=URI:$GATEWAY_URN,DNS:gw.example.com"
csr ocsp-signer "/CN=ignored"

MSG_NAMES='["uri:tel:+4915112345678","uri:urn:postern:device:abc"]'
check "issue device-identity (P-256, permanent-identifier)" \
    issue device device-identity "$K/device.csr" '["permanent-identifier:C02XK0AAJGH5"]' ""
check "issue messaging-identity (P-256)" \
    issue msg-p256 messaging-identity "$K/msg-p256.csr" "$MSG_NAMES" ""
check "issue messaging-identity (Ed25519)" \
    issue msg-ed25519 messaging-identity "$K/msg-ed25519.csr" "$MSG_NAMES" ""
check "issue tls-server (P-256, names in the request)" \
    issue tls-p256 tls-server "$K/tls-p256.csr" '["dns:host.example","ip:127.0.0.1"]' ""
check "issue tls-server (RSA-2048)" \
    issue tls-rsa tls-server "$K/tls-rsa.csr" '["dns:rsa.example"]' ""
check "issue tls-server (CSR with SANs and a subjectKeyIdentifier request, names from the CSR)" \
    issue tls-ski tls-server "$K/tls-ski.csr" null ""
check "issue gateway-client (P-256, gateway URN and DNS name from the CSR)" \
    issue gateway gateway-client "$K/gateway.csr" null ""
check "issue ocsp-signer (P-256, common_name only)" \
    issue ocsp-signer ocsp-signer "$K/ocsp-signer.csr" null "postern conformance OCSP signer"

LEAVES=(device msg-p256 msg-ed25519 tls-p256 tls-rsa tls-ski gateway ocsp-signer)

for l in "${LEAVES[@]}"; do
    check "openssl verify $l" verify_leaf "$l"
done
check "device-identity: purpose sslclient" verify_leaf device sslclient
check "tls-server P-256: purpose sslserver" verify_leaf tls-p256 sslserver
check "tls-server RSA: purpose sslserver" verify_leaf tls-rsa sslserver
check "tls-server SKI CSR: purpose sslserver" verify_leaf tls-ski sslserver
check "gateway-client: purpose sslclient" verify_leaf gateway sslclient

check "device-identity extensions (permanent-identifier otherName, digitalSignature, clientAuth)" exts_device
check "messaging-identity P-256 extensions (tel/urn URIs, digitalSignature only, no EKU)" exts_messaging msg-p256
check "messaging-identity Ed25519 extensions (tel/urn URIs, digitalSignature only, no EKU)" exts_messaging msg-ed25519
check "tls-server P-256 extensions (DNS + IP, serverAuth)" exts_tls tls-p256 'DNS:host\.example' 'IP Address:127\.0\.0\.1'
check "tls-server RSA extensions (DNS, serverAuth)" exts_tls tls-rsa 'DNS:rsa\.example'
check "tls-server SKI CSR extensions (names taken from the CSR)" exts_tls tls-ski 'DNS:ski\.example' 'IP Address:127\.0\.0\.1'
check "gateway-client extensions (gateway URN + DNS, clientAuth only, 30 days)" exts_gateway
check "ocsp-signer extensions (OCSP Signing, OCSP No Check)" exts_ocsp_signer
for l in "${LEAVES[@]}"; do
    if [ "$l" = ocsp-signer ]; then
        check "$l: CRL DP points at http://127.0.0.1:$P_HTTP (AIA OCSP optional with ocsp-nocheck), not a CA" exts_common "$l"
    else
        check "$l: CRL DP and AIA OCSP point at http://127.0.0.1:$P_HTTP, not a CA" exts_common "$l"
    fi
done

ed25519_key() {
    local t
    t=$(openssl x509 -in "$OUT/leaf-msg-ed25519.pem" -noout -text)
    expect_grep "$t" 'Public Key Algorithm: ED25519' "an Ed25519 subject key" || return 1
}
check "messaging-identity Ed25519 leaf carries the Ed25519 key" ed25519_key

# ---------------------------------------------------------------------------------------------
step "4. pkilint"
check "pkilint lint_pkix_cert root CA" pkilint_cert "$OUT/root.pem"
check "pkilint lint_pkix_cert issuing CA" pkilint_cert "$OUT/issuing-only.pem"
check "pkilint lint_pkix_cert broker TLS certificate (tls/server.pem)" pkilint_cert "$OUT/tls-server-cert.pem"
for l in "${LEAVES[@]}"; do
    check "pkilint lint_pkix_cert leaf $l" pkilint_leaf "$l"
done
check "pkilint signer/signee chain root -> issuing CA" pkilint_chain "$OUT/root.pem" "$OUT/issuing-only.pem"
for l in "${LEAVES[@]}"; do
    if have_leaf "$l"; then
        check "pkilint signer/signee chain issuing CA -> $l" pkilint_chain "$OUT/issuing-only.pem" "$OUT/leaf-$l.pem"
    fi
done

# ---------------------------------------------------------------------------------------------
step "4b. gateways over mutual TLS"
# The HTTPS listener asks for an optional client certificate chained to the issuing CA. With no
# Authorization header, a gateway-client certificate authenticates its tenant's gateway.
GATEWAY_SERIAL=$(jq -r '.serial // empty' "$OUT/leaf-gateway.json" 2>/dev/null || true)
whoami_is_gateway() { # FILE: the body of GET /v1/whoami says the default tenant's gateway
    local want
    want=$(jq -cn --arg actor "cert:$GATEWAY_SERIAL" '{tenant: "default", role: "gateway", actor: $actor}')
    expect_eq "$(jq -cS . "$1" 2>&1)" "$(jq -cS . <<<"$want")" "principal" || return 1
}
mtls_curl() {
    have_leaf gateway || { echo "no gateway-client certificate was issued"; return 1; }
    local f=$OUT/whoami-curl.json
    http GET "$(https_url /v1/whoami)" "$f" --cert "$OUT/leaf-gateway.chain.pem" --key "$K/gateway.key"
    show_response "$f"
    expect_eq "$HTTP_STATUS" 200 "HTTP status" || return 1
    whoami_is_gateway "$f"
}
check "curl --cert (gateway-client, no token) GET /v1/whoami -> the default tenant's gateway, actor cert:<serial>" mtls_curl
mtls_s_client() {
    have_leaf gateway || { echo "no gateway-client certificate was issued"; return 1; }
    local out body
    out=$(printf 'GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
        timeout 20 openssl s_client -connect "127.0.0.1:$P_HTTPS" -servername localhost \
            -CAfile "$OUT/root.pem" -verify_return_error -cert "$OUT/leaf-gateway.pem" \
            -key "$K/gateway.key" -ign_eof 2>&1) || {
        echo "$out"
        return 1
    }
    echo "$out"
    # the server names the issuing CA as the one client certificates must chain to
    expect_grep "$out" 'Acceptable client certificate CA names' "the CertificateRequest's CA names" || return 1
    local cn names
    cn=$(openssl x509 -in "$OUT/issuing-only.pem" -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= //p')
    names=$(sed -n '/Acceptable client certificate CA names/,/^Requested Signature Algorithms/p' <<<"$out")
    grep -Fq -- "$cn" <<<"$names" || { echo "the issuing CA ($cn) is not among them"; return 1; }
    expect_grep "$out" 'Verify return code: 0 \(ok\)' "the server certificate verified" || return 1
    expect_grep "$out" '^HTTP/1\.1 200' "HTTP/1.1 200" || return 1
    # the body has no final newline, so s_client's next line follows it on the same line
    body=$(grep -oE '^\{.*\}' <<<"$out" | head -1)
    printf '%s\n' "$body" >"$OUT/whoami-s_client.json"
    whoami_is_gateway "$OUT/whoami-s_client.json"
}
check "openssl s_client -cert (gateway-client) GET /v1/whoami over HTTP/1.1 -> the gateway principal" mtls_s_client
expect_whoami_401() { # NAME DETAIL-REGEX CURL-ARGS...
    local name=$1 detail=$2 f=$OUT/whoami-$1.json
    shift 2
    http GET "$(https_url /v1/whoami)" "$f" "$@"
    show_response "$f"
    expect_eq "$HTTP_STATUS" 401 "HTTP status" || return 1
    expect_grep "$HTTP_CT" '^application/problem\+json' "content type application/problem+json" || return 1
    expect_eq "$(jq -r .type "$f")" urn:postern:problem:unauthorized "problem type" || return 1
    expect_grep "$(jq -r .detail "$f")" "$detail" "detail" || return 1
}
check "curl --cert (device-identity of the same CA) GET /v1/whoami -> 401: not a gateway certificate" \
    expect_whoami_401 device '^client certificate refused: a device-identity certificate is not a gateway certificate$' \
    --cert "$OUT/leaf-device.pem" --key "$K/device.key"
check "GET /v1/whoami with neither certificate nor token -> 401" \
    expect_whoami_401 anonymous '^a bearer token or a gateway client certificate is required$'
mtls_foreign() {
    local d=$OUT/foreign-gw out rc=0
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/ca.key" \
        -out "$d/ca.pem" -subj "/CN=not postern" -days 1 \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || return 1
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/gw.key" \
        -out "$d/gw.csr" -subj "/CN=gw-conformance" 2>/dev/null || return 1
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\nsubjectAltName=URI:%s\n' "$GATEWAY_URN" >"$d/ext.cnf"
    openssl x509 -req -in "$d/gw.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -extfile "$d/ext.cnf" -out "$d/gw.pem" -days 1 2>/dev/null || return 1
    # curl gets no response (curl 7.88 reports the TLS 1.3 alert as a failed getpeername)
    out=$(curl -sS --max-time 20 --cacert "$OUT/root.pem" --cert "$d/gw.pem" --key "$d/gw.key" \
        -o "$d/response" -w '%{http_code}' "$(https_url /v1/whoami)" 2>&1) || rc=$?
    echo "$out"
    echo "(curl exit $rc)"
    [ "$rc" -ne 0 ] || { echo "the request went through:"; cat "$d/response"; return 1; }
    [ ! -s "$d/response" ] || { echo "a response came back:"; cat "$d/response"; return 1; }
    # s_client names the alert
    out=$(printf 'GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
        timeout 20 openssl s_client -connect "127.0.0.1:$P_HTTPS" -servername localhost \
            -CAfile "$OUT/root.pem" -cert "$d/gw.pem" -key "$d/gw.key" -ign_eof 2>&1) || true
    echo "$out"
    expect_grep "$out" 'alert unknown ca' "a TLS unknown_ca alert" || return 1
    expect_no_grep "$out" '^HTTP/1\.1' "an HTTP response" || return 1
}
check "curl and s_client --cert (a gateway URN certificate from another CA) -> the handshake fails with unknown_ca" mtls_foreign

# ---------------------------------------------------------------------------------------------
step "4c. signed answers verified by jwcrypto"
# A gateway keeps a route decision's JWS as evidence; Python jwcrypto verifies it with the key the
# broker publishes in /.well-known/jwks.json, as a relying party that trusts nothing of postern's
# code would. The feed's checkpoint JWS is checked the same way where the broker serves it.
route_jws() {
    local f=$OUT/route-gateway-token.json gw
    admin POST /v1/admin/tokens "$f" -H 'Content-Type: application/json' \
        --data '{"tenant": "default", "role": "gateway", "label": "conformance gateway"}'
    show_response "$f"
    expect_eq "$HTTP_STATUS" 201 "POST /v1/admin/tokens (gateway)" || return 1
    gw=$(jq -r .token "$f")
    f=$OUT/route-decision.json
    http POST "$(https_url /v1/route)" "$f" -H "Authorization: Bearer $gw" -H 'Content-Type: application/json' \
        --data '{"recipient": "tel:+15555550100", "message_class": "public", "thread_id": "conformance-1"}'
    show_response "$f"
    expect_eq "$HTTP_STATUS" 200 "POST /v1/route" || return 1
    # a recipient postern does not know gets the policy's safe fallback, signed all the same
    expect_eq "$(jq -r .transport "$f")" sms_notify_only "transport" || return 1
    jq -r .jws "$f" >"$OUT/route-decision.jws"
    http GET "$(https_url /.well-known/jwks.json)" "$OUT/jwks.json"
    show_response "$OUT/jwks.json"
    expect_eq "$HTTP_STATUS" 200 "GET /.well-known/jwks.json" || return 1
    run_show "$VENV/bin/python" "$HERE/verify_jws.py" "$OUT/jwks.json" "$OUT/route-decision.jws" \
        postern-route+jwt "$f" || return 1
    # a batch is signed once: the JWS payload holds the batch id, the tenant and the decisions
    # made (a request that got an error has none)
    f=$OUT/route-batch.json
    http POST "$(https_url /v1/route/batch)" "$f" -H "Authorization: Bearer $gw" -H 'Content-Type: application/json' \
        --data '{"requests": [{"recipient": "tel:+15555550100", "message_class": "public"},
                              {"recipient": "tel:+15555550101", "message_class": "no-such-class"},
                              {"recipient": "im:someone@example.com", "message_class": "restricted"}]}'
    show_response "$f"
    expect_eq "$HTTP_STATUS" 200 "POST /v1/route/batch" || return 1
    expect_eq "$(jq -c '[.decisions[] | .transport // .error.status]' "$f")" '["sms_notify_only",404,"block"]' \
        "batch answers" || return 1
    jq -r .jws "$f" >"$OUT/route-batch.jws"
    jq '{batch_id, tenant: "default", decisions: [.decisions[] | select(has("error") | not)], jws}' \
        "$f" >"$OUT/route-batch-signed.json"
    run_show "$VENV/bin/python" "$HERE/verify_jws.py" "$OUT/jwks.json" "$OUT/route-batch.jws" \
        postern-route-batch+jwt "$OUT/route-batch-signed.json"
}
check "a route decision's and a route batch's JWS verify with jwcrypto against /.well-known/jwks.json, their payloads are the JSON answers, and forgeries fail" route_jws
checkpoint_absent() { # the router's own 404: this broker has no feed endpoints
    http GET "$(https_url '/feed/v1/default/checkpoint?format=jws')" "$OUT/checkpoint-probe" \
        -H "Authorization: Bearer $TOKEN"
    [ "$HTTP_STATUS" = 404 ] && [ "$(jq -r .detail "$OUT/checkpoint-probe" 2>/dev/null)" = "no such resource" ]
}
checkpoint_jws() {
    local f=$OUT/checkpoint.jws
    http GET "$(https_url '/feed/v1/default/checkpoint?format=jws')" "$f" -H "Authorization: Bearer $TOKEN"
    expect_eq "$HTTP_STATUS" 200 "GET /feed/v1/default/checkpoint?format=jws" || { show_response "$f"; return 1; }
    expect_grep "$HTTP_CT" '^application/jose' "content type application/jose" || return 1
    [ -s "$OUT/jwks.json" ] || http GET "$(https_url /.well-known/jwks.json)" "$OUT/jwks.json"
    run_show "$VENV/bin/python" "$HERE/verify_jws.py" "$OUT/jwks.json" "$f" postern-checkpoint+jws
}
if checkpoint_absent; then
    skip "the feed checkpoint JWS verifies with jwcrypto" \
        "this broker has no /feed/v1/{tenant}/checkpoint endpoint (the router answered 404 no such resource)"
else
    check "the feed checkpoint JWS verifies with jwcrypto against /.well-known/jwks.json, and forgeries fail" checkpoint_jws
fi

# ---------------------------------------------------------------------------------------------
step "5. revocation and the CRL"
REVOKED=gateway
LIVE=tls-p256
REVOKED_SERIAL=$(jq -r '.serial // empty' "$OUT/leaf-$REVOKED.json" 2>/dev/null || true)
LIVE_SERIAL=$(jq -r '.serial // empty' "$OUT/leaf-$LIVE.json" 2>/dev/null || true)

revoke_leaf() {
    [ -n "$REVOKED_SERIAL" ] || { echo "no $REVOKED certificate"; return 1; }
    admin POST "/v1/admin/certificates/$REVOKED_SERIAL/revoke" "$OUT/revoke.json" \
        -H 'Content-Type: application/json' --data '{"reason": "keyCompromise"}'
    show_response "$OUT/revoke.json"
    expect_eq "$HTTP_STATUS" 200 "HTTP status" || return 1
    expect_eq "$(jq -r .status "$OUT/revoke.json")" revoked "status in the response" || return 1
}
check "revoke $REVOKED ($REVOKED_SERIAL) with keyCompromise -> 200" revoke_leaf
check "GET /v1/admin/certificates/{serial} of $REVOKED -> revoked, keyCompromise" check_revoked_api "$REVOKED"
check "curl --cert (the revoked gateway-client) GET /v1/whoami -> 401 on the next request" \
    expect_whoami_401 revoked-gateway "^client certificate refused: certificate $REVOKED_SERIAL is revoked\$" \
    --cert "$OUT/leaf-gateway.chain.pem" --key "$K/gateway.key"

revoke_again() {
    admin POST "/v1/admin/certificates/$REVOKED_SERIAL/revoke" "$OUT/revoke-again.json" \
        -H 'Content-Type: application/json' --data '{"reason": "keyCompromise"}'
    show_response "$OUT/revoke-again.json"
    expect_eq "$HTTP_STATUS" 409 "HTTP status" || return 1
    expect_grep "$HTTP_CT" '^application/problem\+json' "problem+json content type" || return 1
    expect_eq "$(jq -r .status "$OUT/revoke-again.json")" 409 "problem status member" || return 1
    expect_grep "$(jq -r .type "$OUT/revoke-again.json")" '^urn:postern:problem:' "problem type" || return 1
}
check "revoking $REVOKED again -> 409 problem+json" revoke_again

fetch_crl() {
    local url
    url=$(ext_values "$OUT/leaf-$REVOKED.pem" crlDistributionPoints | sed -n 's/^URI://p' | head -1)
    [ -n "$url" ] || url=$(plain_url /pki/crl)
    echo "CRL DP: $url"
    http GET "$url" "$OUT/crl.der"
    printf 'HTTP %s, content-type %s, %s bytes\n' "$HTTP_STATUS" "$HTTP_CT" "$(wc -c <"$OUT/crl.der")"
    expect_eq "$HTTP_STATUS" 200 "HTTP status" || return 1
    expect_eq "$HTTP_CT" "application/pkix-crl" "content type" || return 1
    openssl crl -inform DER -in "$OUT/crl.der" -out "$OUT/crl.pem" || return 1
}
check "fetch the CRL over plain HTTP from the leaf's CRL DP" fetch_crl

crl_verify() {
    local out err
    out=$(openssl crl -inform DER -in "$OUT/crl.der" -CAfile "$OUT/issuing.pem" -noout -text 2>"$OUT/crl-verify.err") || {
        cat "$OUT/crl-verify.err"
        echo "$out"
        return 1
    }
    err=$(cat "$OUT/crl-verify.err")
    echo "stderr: $err"
    echo "$out"
    expect_grep "$err$out" 'verify OK' "verify OK" || return 1
    expect_no_grep "$err" 'verify failure|error' "a verification error on stderr" || return 1
    # the revoked serial, and its reason inside its own entry
    local up entry
    up=$(serial_upper "$REVOKED_SERIAL" | sed 's/^0*//')
    entry=$(awk -v s="$up" '
        /Serial Number:/ { v = $3; sub(/^0+/, "", v); inside = (toupper(v) == s) }
        inside { print }' <<<"$out")
    [ -n "$entry" ] || { echo "serial $REVOKED_SERIAL is not listed"; return 1; }
    echo "entry: $entry"
    expect_grep "$entry" 'Key Compromise' "reason Key Compromise in the entry" || return 1
    expect_grep "$out" 'Next Update:' "nextUpdate" || return 1
    expect_grep "$out" 'X509v3 CRL Number' "a CRL number" || return 1
    expect_grep "$out" 'X509v3 Authority Key Identifier' "an authority key identifier" || return 1
}
check "openssl crl: signature verifies, lists $REVOKED with reason Key Compromise" crl_verify

crl_live_absent() {
    local out up
    out=$(openssl crl -inform DER -in "$OUT/crl.der" -noout -text 2>&1)
    up=$(serial_upper "$LIVE_SERIAL" | sed 's/^0*//')
    if awk -v s="$up" '/Serial Number:/ { v = $3; sub(/^0+/, "", v); if (toupper(v) == s) f = 1 } END { exit !f }' <<<"$out"; then
        echo "live serial $LIVE_SERIAL is on the CRL"
        return 1
    fi
    echo "live serial $LIVE_SERIAL not listed"
}
check "the CRL does not list the live $LIVE" crl_live_absent
check "pkilint lint_crl -t CRL -p PKIX" run_show "$VENV/bin/lint_crl" lint -t CRL -p PKIX -s WARNING "$OUT/crl.der"

# ---------------------------------------------------------------------------------------------
step "6. OCSP"
check "OCSP POST: live $LIVE -> good, verified, nonce echoed" ocsp_query live good "$OUT/leaf-$LIVE.pem"
check "OCSP POST: revoked $REVOKED -> revoked, verified, nonce echoed" ocsp_query revoked revoked "$OUT/leaf-$REVOKED.pem"
ocsp_revoked_reason() {
    local out
    out=$(openssl ocsp -respin "$OUT/ocsp-revoked.der" -resp_text -noverify 2>&1)
    echo "$out"
    expect_grep "$out" 'Reason: keyCompromise|Revocation Reason: keyCompromise|keyCompromise \(0x1\)' "the revocation reason keyCompromise" || return 1
}
check "OCSP response for $REVOKED carries reason keyCompromise" ocsp_revoked_reason
for l in "${LEAVES[@]}"; do
    [ "$l" = "$REVOKED" ] && continue
    have_leaf "$l" || continue
    check "OCSP POST: $l -> good" ocsp_query "good-$l" good "$OUT/leaf-$l.pem"
done
check "pkilint lint_ocsp_response (live)" run_show "$VENV/bin/lint_ocsp_response" lint -s WARNING "$OUT/ocsp-live.der"
check "pkilint lint_ocsp_response (revoked)" run_show "$VENV/bin/lint_ocsp_response" lint -s WARNING "$OUT/ocsp-revoked.der"

ocsp_responder_cert() {
    # the response's signer (delegated responder or the issuing CA) must be authorised
    local out
    out=$(openssl ocsp -respin "$OUT/ocsp-live.der" -resp_text -noverify 2>&1)
    awk '/BEGIN CERTIFICATE/,/END CERTIFICATE/' <<<"$out" >"$OUT/ocsp-responder.pem"
    if [ -s "$OUT/ocsp-responder.pem" ]; then
        first_cert "$OUT/ocsp-responder.pem" "$OUT/ocsp-responder-1.pem"
        openssl x509 -in "$OUT/ocsp-responder-1.pem" -noout -subject -issuer
        ext_values "$OUT/ocsp-responder-1.pem" extendedKeyUsage
        run_show "$VENV/bin/lint_pkix_cert" lint -s WARNING "$OUT/ocsp-responder-1.pem" || return 1
    else
        echo "no certificate in the response (signed by the issuing CA itself?)"
        expect_grep "$out" 'Responder Id:' "a responder id" || return 1
    fi
}
check "OCSP responder certificate (from the response) passes pkilint" ocsp_responder_cert

foreign_ca() {
    local d=$OUT/foreign
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/ca.key" \
        -out "$d/ca.pem" -subj "/CN=throwaway CA" -days 1 \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/leaf.key" \
        -out "$d/leaf.csr" -subj "/CN=foreign" 2>/dev/null
    openssl x509 -req -in "$d/leaf.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -out "$d/leaf.pem" -days 1 2>/dev/null
}
ocsp_foreign() {
    local out rc=0
    out=$(openssl ocsp -issuer "$OUT/foreign/ca.pem" -cert "$OUT/foreign/leaf.pem" \
        -url "$(plain_url /pki/ocsp)" -CAfile "$OUT/root.pem" -resp_text \
        -respout "$OUT/ocsp-foreign.der" 2>&1) || rc=$?
    echo "$out"
    echo "(openssl exit $rc)"
    [ -s "$OUT/ocsp-foreign.der" ] || { echo "no OCSP response"; return 1; }
    expect_grep "$out" ': unknown$|Responder Error: (unauthorized|malformedRequest)' \
        "unknown or an unauthorized/malformed error response" || return 1
    http GET "$(plain_url /healthz)" "$OUT/health-after-foreign.json"
    expect_eq "$HTTP_STATUS" 200 "/healthz after the foreign request" || return 1
}
foreign_ca
check "OCSP for a certificate of a throwaway CA -> unknown or error response, broker still up" ocsp_foreign
ocsp_unknown_serial() {
    local out
    out=$(openssl ocsp -issuer "$OUT/issuing-only.pem" -serial 0x7e57000000000000000000000000000000000001 \
        -url "$(plain_url /pki/ocsp)" -CAfile "$OUT/root.pem" -resp_text 2>&1) || true
    echo "$out"
    expect_grep "$out" ': unknown$|: revoked$|Responder Error: unauthorized' \
        "unknown (or revoked/unauthorized) for a serial never issued" || return 1
    expect_no_grep "$out" ': good$' "good for a serial never issued" || return 1
}
check "OCSP for a serial this CA never issued -> not good" ocsp_unknown_serial

ocsp_get() {
    local out b64 enc req_nonce resp_nonce
    openssl ocsp -issuer "$OUT/issuing-only.pem" -cert "$OUT/leaf-$LIVE.pem" -reqout "$OUT/ocsp-get-req.der" || return 1
    b64=$(base64 -w0 <"$OUT/ocsp-get-req.der")
    enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$b64")
    echo "GET /pki/ocsp/$enc"
    http GET "$(plain_url "/pki/ocsp/$enc")" "$OUT/ocsp-get-resp.der"
    printf 'HTTP %s, content-type %s\n' "$HTTP_STATUS" "$HTTP_CT"
    expect_eq "$HTTP_STATUS" 200 "HTTP status" || return 1
    expect_eq "$HTTP_CT" "application/ocsp-response" "content type" || return 1
    out=$(openssl ocsp -respin "$OUT/ocsp-get-resp.der" -issuer "$OUT/issuing-only.pem" \
        -cert "$OUT/leaf-$LIVE.pem" -CAfile "$OUT/root.pem" -resp_text -no_nonce 2>&1) || {
        echo "$out"
        return 1
    }
    echo "$out"
    expect_grep "$out" 'Response verify OK' "Response verify OK" || return 1
    expect_grep "$out" ': good$' ": good" || return 1
    req_nonce=$(openssl ocsp -reqin "$OUT/ocsp-get-req.der" -req_text 2>/dev/null |
        awk '/OCSP Nonce/{getline; gsub(/ /, ""); print}')
    resp_nonce=$(awk '/OCSP Nonce/{getline; gsub(/ /, ""); print}' <<<"$out")
    echo "request nonce $req_nonce, response nonce $resp_nonce"
    [ -n "$req_nonce" ] || { echo "the request has no nonce"; return 1; }
    expect_eq "$resp_nonce" "$req_nonce" "echoed nonce" || return 1
}
check "OCSP GET /pki/ocsp/{urlencoded base64}: good, verified, nonce echoed" ocsp_get

ocsp_get_raw() {
    # many clients put the base64 in the path as it is ('+' and '/' unescaped); make a
    # request whose base64 has both (the nonce varies until it does)
    local b64 i out
    for i in $(seq 1 100); do
        openssl ocsp -issuer "$OUT/issuing-only.pem" -cert "$OUT/leaf-$REVOKED.pem" -reqout "$OUT/ocsp-raw-req.der" 2>/dev/null || return 1
        b64=$(base64 -w0 <"$OUT/ocsp-raw-req.der")
        case $b64 in *+*/* | */*+*) break ;; esac
    done
    echo "GET /pki/ocsp/$b64 (after $i tries)"
    http GET "$(plain_url "/pki/ocsp/$b64")" "$OUT/ocsp-raw-resp.der"
    printf 'HTTP %s, content-type %s\n' "$HTTP_STATUS" "$HTTP_CT"
    expect_eq "$HTTP_STATUS" 200 "HTTP status" || return 1
    out=$(openssl ocsp -respin "$OUT/ocsp-raw-resp.der" -issuer "$OUT/issuing-only.pem" \
        -cert "$OUT/leaf-$REVOKED.pem" -CAfile "$OUT/root.pem" -resp_text -no_nonce 2>&1) || {
        echo "$out"
        return 1
    }
    echo "$out"
    expect_grep "$out" 'Response verify OK' "Response verify OK" || return 1
    expect_grep "$out" ': revoked$' ": revoked" || return 1
}
check "OCSP GET with raw (unescaped) base64 in the path: revoked $REVOKED, verified" ocsp_get_raw

ocsp_garbage() {
    printf 'not an OCSP request' >"$OUT/ocsp-garbage.req"
    http POST "$(plain_url /pki/ocsp)" "$OUT/ocsp-garbage.der" \
        -H 'Content-Type: application/ocsp-request' --data-binary "@$OUT/ocsp-garbage.req"
    printf 'HTTP %s, content-type %s\n' "$HTTP_STATUS" "$HTTP_CT"
    expect_eq "$HTTP_STATUS" 200 "HTTP status (RFC 6960: an OCSP error response)" || return 1
    local out
    out=$(openssl ocsp -respin "$OUT/ocsp-garbage.der" -resp_text -noverify 2>&1) || true
    echo "$out"
    expect_grep "$out" '[Mm]alformed[Rr]equest' "a malformedRequest response" || return 1
}
check "OCSP POST of garbage -> malformedRequest" ocsp_garbage

# ---------------------------------------------------------------------------------------------
step "6b. ACME http-01 with certbot"
# certbot (standalone) against the `servers` provisioner: it answers http-01 on P_ACME, where
# the broker's validation connects (acme.http01_port, gw.test -> 127.0.0.1 in postern.toml)
CB=$OUT/certbot
ACME_DIRECTORY="https://localhost:$P_HTTPS/acme/servers/directory"
ACME_NAME=gw.test
ACME_REFUSED=www.example.com
certbot_run() { # certbot ARGS... with its directories under $CB and the broker's root trusted
    REQUESTS_CA_BUNDLE=$OUT/root.pem "$VENV/bin/certbot" "$@" --server "$ACME_DIRECTORY" \
        --config-dir "$CB/config" --work-dir "$CB/work" --logs-dir "$CB/logs" --non-interactive
}
certbot_obtain() { # NAME
    certbot_run certonly --standalone --http-01-address 127.0.0.1 --http-01-port "$P_ACME" \
        -d "$1" --agree-tos -m ops@example.test
}
certbot_log_tail() {
    echo "--- $CB/logs/letsencrypt.log (tail)"
    tail -n 60 "$CB/logs/letsencrypt.log" 2>/dev/null || echo "(no log)"
}

certbot_certonly() {
    local live=$CB/config/live/$ACME_NAME
    run_show certbot_obtain "$ACME_NAME" || { certbot_log_tail; return 1; }
    [ -s "$live/cert.pem" ] || { echo "no $live/cert.pem"; return 1; }
    cp "$live/cert.pem" "$OUT/leaf-certbot.pem"
    cp "$live/chain.pem" "$OUT/leaf-certbot.chain.pem"
    openssl x509 -in "$OUT/leaf-certbot.pem" -noout -subject -serial -dates
    expect_eq "$(grep -c 'BEGIN CERTIFICATE' "$live/chain.pem")" 1 "certificates in certbot's chain.pem" || return 1
    expect_eq "$(fingerprint "$live/chain.pem")" "$(fingerprint "$OUT/issuing-only.pem")" \
        "certbot's chain.pem (the issuing CA)" || return 1
    # the certificate certifies the key certbot generated
    expect_eq "$(openssl x509 -in "$OUT/leaf-certbot.pem" -noout -pubkey)" \
        "$(openssl pkey -in "$live/privkey.pem" -pubout)" "the certificate's key vs certbot's privkey.pem" || return 1
}
check "certbot certonly --standalone obtains a certificate for $ACME_NAME (http-01 on 127.0.0.1:$P_ACME)" certbot_certonly

certbot_exts() {
    have_leaf certbot || { echo "certbot obtained no certificate"; return 1; }
    exts_tls certbot || return 1
    expect_eq "$(ext_values "$OUT/leaf-certbot.pem" subjectAltName)" "DNS:$ACME_NAME" "subjectAltName" || return 1
    exts_common certbot
}
check "certbot's certificate: exactly DNS:$ACME_NAME, serverAuth, CRL DP and AIA OCSP, not a CA" certbot_exts
certbot_verify() {
    have_leaf certbot || { echo "certbot obtained no certificate"; return 1; }
    verify_leaf certbot sslserver
}
check "openssl verify -purpose sslserver of certbot's certificate (root + issuing CA)" certbot_verify
certbot_pkilint() {
    have_leaf certbot || { echo "certbot obtained no certificate"; return 1; }
    run_show "$VENV/bin/lint_pkix_cert" lint -s WARNING "$OUT/leaf-certbot.pem" || return 1
    pkilint_chain "$OUT/issuing-only.pem" "$OUT/leaf-certbot.pem"
}
check "pkilint lint_pkix_cert and signer/signee chain of certbot's certificate: no finding at WARNING or above" certbot_pkilint
check "OCSP POST: certbot's certificate -> good" ocsp_query certbot-good good "$OUT/leaf-certbot.pem"

certbot_revoke() {
    have_leaf certbot || { echo "certbot obtained no certificate"; return 1; }
    run_show certbot_run revoke --cert-path "$CB/config/live/$ACME_NAME/cert.pem" \
        --reason keycompromise --no-delete-after-revoke || { certbot_log_tail; return 1; }
    ocsp_query certbot-revoked revoked "$OUT/leaf-certbot.pem" || return 1
    local out
    out=$(openssl ocsp -respin "$OUT/ocsp-certbot-revoked.der" -resp_text -noverify 2>&1)
    expect_grep "$out" 'Reason: keyCompromise|Revocation Reason: keyCompromise|keyCompromise \(0x1\)' \
        "the revocation reason keyCompromise" || return 1
}
check "certbot revoke --reason keycompromise, then the broker's OCSP says revoked (keyCompromise)" certbot_revoke

certbot_refused() {
    local rc=0 out
    out=$(certbot_obtain "$ACME_REFUSED" 2>&1) || rc=$?
    echo "$out"
    echo "(certbot exit $rc)"
    [ "$rc" -ne 0 ] || { echo "certbot succeeded for a name the provisioner refuses"; return 1; }
    [ ! -e "$CB/config/live/$ACME_REFUSED" ] || { echo "a lineage for $ACME_REFUSED exists"; return 1; }
    # the broker refused the order (not, say, a failed validation)
    grep -E 'rejectedIdentifier' "$CB/logs/letsencrypt.log" || {
        certbot_log_tail
        echo "no rejectedIdentifier in certbot's log"
        return 1
    }
}
check "certbot certonly for $ACME_REFUSED (a name the provisioner refuses) fails with rejectedIdentifier" certbot_refused

# ---------------------------------------------------------------------------------------------
step "6c. signed configuration profiles"
# An MDM fetches a device's enrollment profile CMS-signed (`postern profile --form signed`);
# openssl verifies the SignedData against the broker's root as a device would, and its content is
# the unsigned profile (the same but for payload UUIDs, which change with every issuance).
PROF=$OUT/profiles
mkdir -p "$PROF"
profile_device() {
    admin POST /v1/admin/devices "$PROF/device.json" -H 'Content-Type: application/json' \
        --data '{"serial": "CONFORMANCE-IPHONE-1", "platform": "ios"}'
    [ "$HTTP_STATUS" = 201 ] && jq -r .id "$PROF/device.json"
}
signed_profile() {
    local dev
    dev=$(profile_device) || { show_response "$PROF/device.json"; return 1; }
    run_show "$POSTERN" profile --url "$(https_url '')" --ca-file "$DATA/ca/root.pem" --token "$TOKEN" \
        --device "$dev" --form signed --out "$PROF/signed.mobileconfig" || return 1
    run_show openssl cms -verify -inform DER -in "$PROF/signed.mobileconfig" \
        -CAfile "$DATA/ca/root.pem" -out "$PROF/signed-content.xml" || return 1
    admin GET "/v1/profiles/default/devices/$dev/enrollment.mobileconfig" "$PROF/unsigned.mobileconfig"
    expect_eq "$HTTP_STATUS" 200 "GET .../enrollment.mobileconfig" || return 1
    expect_eq "$HTTP_CT" application/x-apple-aspen-config "content type" || return 1
    local strip='/<key>PayloadUUID<\/key>/{n;d}'
    if ! diff <(sed "$strip" "$PROF/signed-content.xml") <(sed "$strip" "$PROF/unsigned.mobileconfig"); then
        echo "the signed content is not the unsigned profile"
        return 1
    fi
    echo "signed content = unsigned profile ($(wc -c <"$PROF/unsigned.mobileconfig") bytes, payload UUIDs aside)"
    # a tampered byte fails verification
    cp "$PROF/signed.mobileconfig" "$PROF/tampered.mobileconfig"
    printf 'X' | dd of="$PROF/tampered.mobileconfig" bs=1 seek=400 conv=notrunc 2>/dev/null
    if openssl cms -verify -inform DER -in "$PROF/tampered.mobileconfig" -CAfile "$DATA/ca/root.pem" \
        -out /dev/null 2>/dev/null; then
        echo "a tampered profile verified"
        return 1
    fi
}
http GET "$(https_url /v1/profiles/default/devices/none/android.json)" "$PROF/probe" -H "Authorization: Bearer $TOKEN"
if [ "$HTTP_STATUS" = 404 ] && [ "$(jq -r .detail "$PROF/probe" 2>/dev/null)" = "no such resource" ]; then
    skip "signed profile verified by openssl cms" "this broker has no profile API"
else
    check "a signed .mobileconfig fetched with postern profile verifies with openssl cms -CAfile root.pem, and its content is the unsigned profile" signed_profile
fi

# ---------------------------------------------------------------------------------------------
step "7. bad input"
AUDIT_BEFORE_BAD=$(audit_count)
B=$OUT/bad
mkdir -p "$B"
printf 'hello, this is not a CSR\n' >"$B/garbage.csr"
{
    echo "-----BEGIN CERTIFICATE REQUEST-----"
    sed '1d;$d' "$K/tls-p256.csr" | tr -d '\n' | head -c 120 | fold -w 64
    echo
    echo "-----END CERTIFICATE REQUEST-----"
} >"$B/truncated.csr"
python3 - "$K/tls-p256.csr" "$B/badsig.csr" <<'EOF'
import base64, sys
lines = open(sys.argv[1]).read().strip().splitlines()
der = bytearray(base64.b64decode("".join(lines[1:-1])))
# the last octet belongs to the signature value (the DER INTEGER s of ECDSA-Sig-Value)
der[-1] ^= 0x01
b64 = base64.b64encode(bytes(der)).decode()
with open(sys.argv[2], "w") as f:
    f.write("-----BEGIN CERTIFICATE REQUEST-----\n")
    f.write("\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)))
    f.write("\n-----END CERTIFICATE REQUEST-----\n")
EOF
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$B/rsa1024.key" 2>/dev/null
openssl req -new -key "$B/rsa1024.key" -subj "/CN=weak.example" -out "$B/rsa1024.csr"

badsig_sanity() {
    # openssl 3.0 `req -verify` exits 0 either way; read what it says
    local out
    out=$(openssl req -in "$B/badsig.csr" -noout -verify 2>&1 || true)
    echo "$out"
    expect_grep "$out" 'verify failure' "a self-signature verify failure" || return 1
    expect_no_grep "$out" 'verify OK' "verify OK" || return 1
}
check "(test input) the tampered CSR's signature is bad for openssl too" badsig_sanity

# expect_problem NAME STATUS-REGEX CURL-ARGS...: POST /v1/admin/certificates
expect_problem() {
    local name=$1 want=$2 f=$B/$1.response.json ptype pstatus
    shift 2
    http POST "$(https_url /v1/admin/certificates)" "$f" "$@"
    show_response "$f"
    expect_grep "$HTTP_STATUS" "^($want)\$" "HTTP status $want" || return 1
    expect_grep "$HTTP_CT" '^application/problem\+json' "content type application/problem+json" || return 1
    ptype=$(jq -r .type "$f" 2>&1) || { echo "body is not JSON: $ptype"; return 1; }
    pstatus=$(jq -r .status "$f")
    expect_grep "$ptype" '^urn:postern:problem:[a-z-]+$' "a urn:postern:problem: type" || return 1
    expect_eq "$pstatus" "$HTTP_STATUS" "the problem's status member" || return 1
}
issue_body() { # CSR-FILE PROFILE NAMES-JSON|null -> JSON on stdout
    jq -n --rawfile csr "$1" --arg profile "$2" --argjson names "$3" \
        '{csr: $csr, profile: $profile} + (if $names == null then {} else {names: $names} end)'
}
AUTH=(-H "Authorization: Bearer $TOKEN")
JSON=(-H 'Content-Type: application/json')
issue_body "$B/garbage.csr" tls-server '["dns:bad.example"]' >"$B/garbage.json"
issue_body "$B/truncated.csr" tls-server '["dns:bad.example"]' >"$B/truncated.json"
issue_body "$B/badsig.csr" tls-server '["dns:bad.example"]' >"$B/badsig.json"
issue_body "$B/rsa1024.csr" tls-server '["dns:weak.example"]' >"$B/rsa1024.json"
issue_body "$K/tls-p256.csr" no-such-profile '["dns:bad.example"]' >"$B/unknown-profile.json"
issue_body "$K/tls-p256.csr" tls-server '["uri:tel:+1555"]' >"$B/forbidden-san.json"
issue_body "$K/tls-p256.csr" tls-server '["dns:ok.example"]' >"$B/good.json"
python3 - "$K/tls-p256.csr" "$B/oversized.json" <<'EOF'
import json, sys
csr = open(sys.argv[1]).read()
# a valid request padded past 64 KiB
json.dump({"csr": csr + "\n" + " " * (70 * 1024), "profile": "tls-server", "names": ["dns:big.example"]},
          open(sys.argv[2], "w"))
EOF
check "garbage CSR -> 400 problem+json" expect_problem garbage '400' "${AUTH[@]}" "${JSON[@]}" --data-binary "@$B/garbage.json"
check "truncated CSR -> 400 problem+json" expect_problem truncated '400' "${AUTH[@]}" "${JSON[@]}" --data-binary "@$B/truncated.json"
check "CSR with a bad signature -> 400 problem+json" expect_problem badsig '400' "${AUTH[@]}" "${JSON[@]}" --data-binary "@$B/badsig.json"
check "RSA-1024 CSR -> 400 problem+json" expect_problem rsa1024 '400' "${AUTH[@]}" "${JSON[@]}" --data-binary "@$B/rsa1024.json"
check "unknown profile -> 4xx problem+json" expect_problem unknown-profile '4[0-9][0-9]' "${AUTH[@]}" "${JSON[@]}" --data-binary "@$B/unknown-profile.json"
check "SAN the profile forbids (uri:tel:+1555 on tls-server) -> 4xx problem+json" expect_problem forbidden-san '4[0-9][0-9]' "${AUTH[@]}" "${JSON[@]}" --data-binary "@$B/forbidden-san.json"
# The broker answers 401 before it reads the body. Over HTTP/2 it then cancels the upload with
# RST_STREAM(NO_ERROR), as RFC 9113 section 8.1 allows; curl 7.88 (Debian 12) reports that as
# error 92 and drops the response. So curl asks over HTTP/1.1 here, and h2_early_response.py
# checks the HTTP/2 behaviour itself (complete 401 first, then only NO_ERROR).
check "missing bearer token -> 401 problem+json (HTTP/1.1)" expect_problem no-token '401' --http1.1 "${JSON[@]}" --data-binary "@$B/good.json"
check "wrong bearer token -> 401 problem+json (HTTP/1.1)" expect_problem wrong-token '401' --http1.1 -H "Authorization: Bearer wrong-$(openssl rand -hex 16)" "${JSON[@]}" --data-binary "@$B/good.json"
h2_unauthorized() { # [HEADER...]
    local out
    out=$("$VENV/bin/python" "$HERE/h2_early_response.py" "$(https_url /v1/admin/certificates)" \
        "$OUT/root.pem" "$B/good.json" 'content-type: application/json' "$@" 2>&1) || {
        echo "$out"
        return 1
    }
    echo "$out"
    expect_grep "$out" '^status: 401$' "status 401" || return 1
    expect_grep "$out" '^content-type: application/problem\+json' "content type application/problem+json" || return 1
    expect_grep "$out" '"type":"urn:postern:problem:unauthorized"' "the unauthorized problem type" || return 1
}
check "missing bearer token over HTTP/2 -> complete 401 problem+json, then at most RST_STREAM(NO_ERROR)" h2_unauthorized
check "wrong bearer token over HTTP/2 -> complete 401 problem+json, then at most RST_STREAM(NO_ERROR)" h2_unauthorized "authorization: Bearer wrong-$(openssl rand -hex 16)"
check "oversized body (>64 KiB) -> 413 problem+json" expect_problem oversized '413' "${AUTH[@]}" "${JSON[@]}" --data-binary "@$B/oversized.json"
check "body that is not JSON -> 4xx problem+json" expect_problem not-json '4[0-9][0-9]' "${AUTH[@]}" "${JSON[@]}" --data-binary '{"csr": '

revoke_missing() {
    local f=$B/revoke-missing.json
    admin POST /v1/admin/certificates/7e57000000000000000000000000000000000002/revoke "$f" \
        "${JSON[@]}" --data '{"reason": "keyCompromise"}'
    show_response "$f"
    expect_eq "$HTTP_STATUS" 404 "HTTP status" || return 1
    expect_grep "$HTTP_CT" '^application/problem\+json' "content type application/problem+json" || return 1
    expect_grep "$(jq -r .type "$f")" '^urn:postern:problem:' "a urn:postern:problem: type" || return 1
}
check "revoking a nonexistent serial -> 404 problem+json" revoke_missing

audit_unchanged() {
    local now
    now=$(audit_count)
    echo "audit entries before the bad requests: $AUDIT_BEFORE_BAD, after: $now"
    expect_grep "$now" '^[0-9]+$' "an audit count" || return 1
    if [ "$now" != "$AUDIT_BEFORE_BAD" ]; then
        admin GET "/v1/admin/audit?from=$((AUDIT_BEFORE_BAD + 1))&limit=1000" "$B/audit-new.json"
        echo "new entries:"
        jq -c '.[] | {seq, action, subject, details}' "$B/audit-new.json"
        return 1
    fi
}
check "the bad requests issued nothing (audit log length unchanged)" audit_unchanged
check "broker still healthy after the bad input" wait_healthy broker

# ---------------------------------------------------------------------------------------------
step "7b. SCIM 2.0: scim2-tester and scim-sanity"
# A fresh tenant and a scim token for it through the admin API; the tools reach /scim/v2 over
# HTTPS and trust the broker's root CA through SSL_CERT_FILE / REQUESTS_CA_BUNDLE. scim2's
# token goes in SCIM_CLI_HEADERS (not on the command line); scim-sanity takes only --token.
SCIM_DIR=$OUT/scim
mkdir -p "$SCIM_DIR"
SCIM_TOKEN=
SCIM_URL=$(https_url /scim/v2)
scim_token() {
    admin POST /v1/admin/tenants "$SCIM_DIR/tenant.json" -H 'content-type: application/json' \
        --data '{"id":"scim-conformance","name":"SCIM conformance"}'
    expect_eq "$HTTP_STATUS" 201 "POST /v1/admin/tenants" || { show_response "$SCIM_DIR/tenant.json"; return 1; }
    admin POST /v1/admin/tokens "$SCIM_DIR/token.json" -H 'content-type: application/json' \
        --data '{"tenant":"scim-conformance","role":"scim","label":"scim conformance"}'
    expect_eq "$HTTP_STATUS" 201 "POST /v1/admin/tokens" || { show_response "$SCIM_DIR/token.json"; return 1; }
    SCIM_TOKEN=$(jq -r .token "$SCIM_DIR/token.json")
    rm -f "$SCIM_DIR/token.json"
    [ -n "$SCIM_TOKEN" ] && [ "$SCIM_TOKEN" != null ] || { echo "no token in the answer"; return 1; }
    echo "tenant scim-conformance, a scim token"
}
check "a tenant and a scim token for it (admin API)" scim_token

scim2_test() {
    [ -n "$SCIM_TOKEN" ] || { echo "no scim token"; return 1; }
    local rc=0
    SSL_CERT_FILE=$OUT/root.pem REQUESTS_CA_BUNDLE=$OUT/root.pem \
        SCIM_CLI_HEADERS="Authorization: Bearer $SCIM_TOKEN" \
        "$VENV/bin/scim2" --url "$SCIM_URL" test >"$SCIM_DIR/scim2-test.txt" 2>&1 </dev/null || rc=$?
    local ok bad
    ok=$(grep -c '^SUCCESS' "$SCIM_DIR/scim2-test.txt" || true)
    bad=$(grep -Ec '^(ERROR|CRITICAL|WARNING|SKIPPED)' "$SCIM_DIR/scim2-test.txt" || true)
    SCIM2_SUMMARY="scim2 test: $ok SUCCESS, $bad not SUCCESS (exit $rc)"
    echo "$SCIM2_SUMMARY"
    if [ "$rc" -ne 0 ] || [ "$bad" -ne 0 ] || [ "$ok" -eq 0 ]; then
        grep -Ev '^(SUCCESS|  )' "$SCIM_DIR/scim2-test.txt" | head -50
        grep -EA3 '^(ERROR|CRITICAL|WARNING|SKIPPED)' "$SCIM_DIR/scim2-test.txt" | head -80
        return 1
    fi
}
SCIM2_SUMMARY=
check "scim2 --url $SCIM_URL test (scim2-tester 0.5.2): every result SUCCESS, none skipped" scim2_test
[ -n "$SCIM2_SUMMARY" ] && info "$SCIM2_SUMMARY"

scim_sanity() {
    [ -n "$SCIM_TOKEN" ] || { echo "no scim token"; return 1; }
    local rc=0
    SSL_CERT_FILE=$OUT/root.pem REQUESTS_CA_BUNDLE=$OUT/root.pem \
        "$VENV/bin/scim-sanity" probe "$SCIM_URL" --token "$SCIM_TOKEN" --i-accept-side-effects \
        --json-output >"$SCIM_DIR/scim-sanity.json" 2>"$SCIM_DIR/scim-sanity.err" </dev/null || rc=$?
    SANITY_SUMMARY="scim-sanity probe: $(jq -r '.summary | "\(.passed) passed, \(.failed) failed, \(.skipped) skipped, \(.total) total"' "$SCIM_DIR/scim-sanity.json" 2>/dev/null) (exit $rc)"
    echo "$SANITY_SUMMARY"
    if [ "$rc" -ne 0 ] || [ "$(jq -r '.summary.failed' "$SCIM_DIR/scim-sanity.json" 2>/dev/null)" != 0 ]; then
        head -c 4000 "$SCIM_DIR/scim-sanity.json"
        cat "$SCIM_DIR/scim-sanity.err"
        return 1
    fi
}
SANITY_SUMMARY=
check "scim-sanity probe $SCIM_URL (0.7.4, strict): exit 0, no failure" scim_sanity
[ -n "$SANITY_SUMMARY" ] && info "$SANITY_SUMMARY"

scim_errors() {
    [ -n "$SCIM_TOKEN" ] || { echo "no scim token"; return 1; }
    http GET "$SCIM_URL/Users" "$SCIM_DIR/no-token.json"
    show_response "$SCIM_DIR/no-token.json"
    expect_eq "$HTTP_STATUS" 401 "status without a token" || return 1
    expect_eq "$(jq -r .status "$SCIM_DIR/no-token.json")" 401 "SCIM error status (a string)" || return 1
    expect_eq "$(jq -r '.schemas[0]' "$SCIM_DIR/no-token.json")" urn:ietf:params:scim:api:messages:2.0:Error "error schema" || return 1
    http GET "$SCIM_URL/Users?filter=userName%20eq" "$SCIM_DIR/bad-filter.json" -H "Authorization: Bearer $SCIM_TOKEN"
    show_response "$SCIM_DIR/bad-filter.json"
    expect_eq "$HTTP_STATUS" 400 "status of a broken filter" || return 1
    expect_eq "$(jq -r .scimType "$SCIM_DIR/bad-filter.json")" invalidFilter "scimType" || return 1
    expect_eq "$HTTP_CT" application/scim+json "content type" || return 1
}
check "SCIM errors over HTTPS: 401 and invalidFilter in the SCIM error schema" scim_errors
SCIM_TOKEN=

# ---------------------------------------------------------------------------------------------
step "7c. SCEP: Debian's scepclient with a one-time dynamic challenge"
# The MDM's part (a device in the inventory, a challenge bound to it) through the admin API, the
# device's part with micromdm's scepclient (Debian package `scep`) over plain HTTP, as MDM SCEP
# payloads do. scepclient encrypts to every certificate GetCACert lists unless told which one is
# the RA; `-ca-fingerprint` names it (the RSA RA; the CA chain is ECDSA).
SCEP_DIR=$OUT/scep
mkdir -p "$SCEP_DIR"
SCEP_URL=$(plain_url /scep/scep)
SCEP_CHALLENGE=
scep_challenge() {
    admin POST /v1/admin/devices "$SCEP_DIR/device.json" -H 'content-type: application/json' \
        --data '{"serial":"C02SCEPCONF01","platform":"macos"}'
    expect_eq "$HTTP_STATUS" 201 "POST /v1/admin/devices" || { show_response "$SCEP_DIR/device.json"; return 1; }
    admin POST /v1/scep/scep/challenges "$SCEP_DIR/challenge.json" -H 'content-type: application/json' \
        --data '{"device":"C02SCEPCONF01"}'
    expect_eq "$HTTP_STATUS" 201 "POST /v1/scep/scep/challenges" || { show_response "$SCEP_DIR/challenge.json"; return 1; }
    SCEP_CHALLENGE=$(jq -r .challenge "$SCEP_DIR/challenge.json")
    echo "a challenge for C02SCEPCONF01, expires $(jq -r .expires_at "$SCEP_DIR/challenge.json")"
}
check "a device and a one-time SCEP challenge bound to it (admin API)" scep_challenge

scep_ra_fingerprint() {
    curl -sS --max-time 20 -o "$SCEP_DIR/cacert.p7" "$SCEP_URL?operation=GetCACert" || return 1
    openssl pkcs7 -inform DER -in "$SCEP_DIR/cacert.p7" -print_certs >"$SCEP_DIR/cacert.pem" || return 1
    # the first certificate is the RA
    awk '/BEGIN CERT/{n++} n==1' "$SCEP_DIR/cacert.pem" >"$SCEP_DIR/ra.pem"
    openssl x509 -in "$SCEP_DIR/ra.pem" -noout -subject -ext keyUsage
    openssl x509 -in "$SCEP_DIR/ra.pem" -outform DER | sha256sum | cut -d' ' -f1
}
scep_enroll() {
    [ -n "$SCEP_CHALLENGE" ] || { echo "no challenge"; return 1; }
    command -v scepclient >/dev/null || { echo "scepclient is not installed (Debian package scep)"; return 1; }
    local fp
    fp=$(scep_ra_fingerprint | tail -n 1) || return 1
    run_show scepclient -server-url "$SCEP_URL" -challenge "$SCEP_CHALLENGE" -ca-fingerprint "$fp" \
        -private-key "$SCEP_DIR/client.key" -certificate "$SCEP_DIR/client.pem" -cn C02SCEPCONF01 || return 1
    [ -s "$SCEP_DIR/client.pem" ] || { echo "no certificate written"; return 1; }
    run_show openssl verify -CAfile "$OUT/root.pem" -untrusted "$SCEP_DIR/cacert.pem" "$SCEP_DIR/client.pem" || return 1
    openssl x509 -in "$SCEP_DIR/client.pem" -noout -subject -issuer
}
check "scepclient enrolls with the challenge over $SCEP_URL and openssl verify accepts the certificate" scep_enroll

scep_reuse() {
    [ -n "$SCEP_CHALLENGE" ] || { echo "no challenge"; return 1; }
    local fp out rc=0
    fp=$(scep_ra_fingerprint | tail -n 1) || return 1
    out=$(scepclient -server-url "$SCEP_URL" -challenge "$SCEP_CHALLENGE" -ca-fingerprint "$fp" \
        -private-key "$SCEP_DIR/client2.key" -certificate "$SCEP_DIR/client2.pem" -cn C02SCEPCONF01 2>&1) || rc=$?
    echo "$out" | tail -n 3
    [ ! -e "$SCEP_DIR/client2.pem" ] || { echo "a certificate was issued for a used challenge"; return 1; }
    echo "$out" | grep -q 'failInfo: badRequest' || { echo "no badRequest in the answer (exit $rc)"; return 1; }
}
check "the same challenge again is refused (CertRep FAILURE, failInfo badRequest), no certificate" scep_reuse
SCEP_CHALLENGE=

# ---------------------------------------------------------------------------------------------
step "8. crash durability (kill -9 right after a 201)"
p256 crash
csr crash "/CN=crash.example"
CRASH_SERIAL=
issue_and_kill() {
    issue crash tls-server "$K/crash.csr" '["dns:crash.example"]' "" || return 1
    kill -KILL "$BROKER_PID"
    CRASH_SERIAL=$(jq -r .serial "$OUT/leaf-crash.json")
    echo "killed the broker (pid $BROKER_PID) with SIGKILL right after the 201 for $CRASH_SERIAL"
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
}
check "issue a certificate, then kill -9 the broker" issue_and_kill
if [ -n "$BROKER_PID" ]; then
    kill -KILL "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
fi
start_broker broker-restarted
check "the broker restarts on the same data directory and becomes healthy" wait_healthy broker-restarted

root_unchanged() {
    local after_file after_api
    after_file=$(fingerprint "$DATA/ca/root.pem")
    http GET "$(https_url /pki/ca/root.pem)" "$OUT/root-after.pem"
    expect_eq "$HTTP_STATUS" 200 "GET /pki/ca/root.pem" || return 1
    after_api=$(fingerprint "$OUT/root-after.pem")
    printf 'before %s\nfile   %s\napi    %s\n' "$ROOT_FP_BEFORE" "$after_file" "$after_api"
    expect_eq "$after_file" "$ROOT_FP_BEFORE" "ca/root.pem fingerprint" || return 1
    expect_eq "$after_api" "$ROOT_FP_BEFORE" "/pki/ca/root.pem fingerprint" || return 1
}
check "root CA unchanged after the crash (file and /pki/ca/root.pem)" root_unchanged

crash_cert_good() {
    [ -n "$CRASH_SERIAL" ] || { echo "no certificate was issued before the crash"; return 1; }
    admin GET "/v1/admin/certificates/$CRASH_SERIAL" "$OUT/get-crash.json"
    show_response "$OUT/get-crash.json"
    expect_eq "$HTTP_STATUS" 200 "HTTP status" || return 1
    expect_eq "$(jq -r .status "$OUT/get-crash.json")" good "status" || return 1
    expect_eq "$(jq -r .certificate_pem "$OUT/get-crash.json" | fingerprint /dev/stdin)" \
        "$(fingerprint "$OUT/leaf-crash.pem")" "stored certificate" || return 1
}
check "the certificate acknowledged before the crash is there (200, good)" crash_cert_good
check "the revoked $REVOKED is still revoked (API)" check_revoked_api "$REVOKED"
check "the revoked $REVOKED is still revoked (OCSP)" ocsp_query revoked-after revoked "$OUT/leaf-$REVOKED.pem"
if [ -s "$OUT/leaf-crash.pem" ]; then
    check "OCSP for the certificate issued before the crash -> good" ocsp_query crash good "$OUT/leaf-crash.pem"
fi
crl_after() {
    http GET "$(plain_url /pki/crl)" "$OUT/crl-after.der"
    expect_eq "$HTTP_STATUS" 200 "HTTP status" || return 1
    local out up
    out=$(openssl crl -inform DER -in "$OUT/crl-after.der" -CAfile "$OUT/issuing.pem" -noout -text 2>&1) || {
        echo "$out"
        return 1
    }
    up=$(serial_upper "$REVOKED_SERIAL" | sed 's/^0*//')
    expect_grep "$out" 'verify OK' "verify OK" || { echo "$out"; return 1; }
    awk -v s="$up" '/Serial Number:/ { v = $3; sub(/^0+/, "", v); if (toupper(v) == s) f = 1 } END { exit !f }' <<<"$out" ||
        { echo "$out"; echo "serial $REVOKED_SERIAL missing"; return 1; }
    echo "CRL after restart verifies and lists $REVOKED_SERIAL"
}
check "the CRL after the restart still lists $REVOKED" crl_after
AUDIT_AFTER_RESTART=$(audit_count)

STOP_STATUS=
sigterm_clean() {
    stop_broker TERM || return 1
    expect_eq "${STOP_STATUS:-none}" 0 "exit status after SIGTERM" || return 1
}
check "SIGTERM stops the broker cleanly (exit 0)" sigterm_clean

audit_verify() {
    local out
    out=$(run_show "$POSTERN" --data-dir "$DATA" audit verify) || {
        echo "$out"
        return 1
    }
    echo "$out"
    expect_grep "$out" '^audit chain ok: [0-9]+ entries, head [0-9a-f]+' "audit chain ok" || return 1
    local n
    n=$(sed -n 's/^audit chain ok: \([0-9]*\) entries.*/\1/p' <<<"$out")
    expect_eq "$n" "$AUDIT_AFTER_RESTART" "entries (audit verify vs the API after the restart)" || return 1
}
check "postern audit verify (offline) -> audit chain ok" audit_verify

ca_show() {
    local out fp
    out=$(run_show "$POSTERN" --data-dir "$DATA" ca show) || {
        echo "$out"
        return 1
    }
    echo "$out"
    fp=$(awk '/^root CA:/{r=1} r && /sha256:/{print $2; exit}' <<<"$out" | tr -d ':' | tr 'A-F' 'a-f')
    expect_eq "$fp" "$ROOT_FP_BEFORE" "root sha256 in ca show" || return 1
}
check "postern ca show (offline) reports the same root" ca_show

# ---------------------------------------------------------------------------------------------
step "summary"
info "artifacts in $OUT; $(($(date +%s) - STARTED)) s"
if [ "${#SKIPPED_NAMES[@]}" -gt 0 ]; then
    echo "skipped checks:"
    for n in "${SKIPPED_NAMES[@]}"; do echo "  - $n"; done
fi
if [ "$FAILED" -gt 0 ]; then
    echo "failed checks:"
    for n in "${FAILED_NAMES[@]}"; do echo "  - $n"; done
fi
echo
echo "conformance: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
