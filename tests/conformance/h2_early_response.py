"""HTTP/2 probe: does a server's early answer to a POST reach the client intact?

    h2_early_response.py URL CAFILE BODY-FILE [HEADER: VALUE]...

Opens one HTTP/2 connection (TLS, ALPN h2), sends the request HEADERS without END_STREAM and
waits, like a client whose body has not left yet. A server may answer before it has read the
body (an authentication failure, a body that is too large) and then cancel the rest of the
upload with RST_STREAM(NO_ERROR) (RFC 9113 section 8.1). The complete response must arrive
before any reset, and a reset after it must carry NO_ERROR. If the server waits for the body
instead, the body is sent and the response read as usual.

Prints the status, content-type, body and any reset; exits 0 when a complete response arrived
and no reset carried an error code, 1 otherwise.
"""

import socket
import ssl
import sys
import time
import urllib.parse

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    url = urllib.parse.urlsplit(sys.argv[1])
    cafile, body_file = sys.argv[2], sys.argv[3]
    extra = []
    for h in sys.argv[4:]:
        name, _, value = h.partition(":")
        extra.append((name.strip().lower(), value.strip()))
    with open(body_file, "rb") as f:
        body = f.read()

    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((url.hostname, url.port or 443), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname=url.hostname)
    if sock.selected_alpn_protocol() != "h2":
        print(f"the server did not negotiate h2 (ALPN {sock.selected_alpn_protocol()!r})")
        return 1

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    path = url.path + (f"?{url.query}" if url.query else "")
    headers = [
        (":method", "POST"),
        (":path", path),
        (":scheme", "https"),
        (":authority", url.netloc),
        ("content-length", str(len(body))),
    ] + extra
    conn.send_headers(1, headers, end_stream=False)
    sock.sendall(conn.data_to_send())

    status = None
    resp_headers = {}
    data = bytearray()
    ended = False
    resets = []
    body_sent = False
    offset = 0
    deadline = time.monotonic() + 10
    # give the server a moment to answer before the body goes out
    body_due = time.monotonic() + 0.5
    sock.settimeout(0.1)
    while time.monotonic() < deadline:
        if not body_sent and not ended and not resets and time.monotonic() >= body_due:
            if offset == 0:
                print("(no answer yet; sending the body)")
            try:
                # as much as flow control allows; the rest after WINDOW_UPDATEs
                while offset < len(body):
                    n = min(
                        len(body) - offset,
                        conn.max_outbound_frame_size,
                        conn.local_flow_control_window(1),
                    )
                    if n <= 0:
                        break
                    conn.send_data(1, body[offset : offset + n])
                    offset += n
                if offset >= len(body):
                    conn.end_stream(1)
                    body_sent = True
                sock.sendall(conn.data_to_send())
            except h2.exceptions.StreamClosedError:
                body_sent = True
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            if ended and time.monotonic() > body_due + 0.5:
                break
            continue
        if not chunk:
            break
        for ev in conn.receive_data(chunk):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == 1:
                for k, v in ev.headers:
                    k = k.decode() if isinstance(k, bytes) else k
                    v = v.decode() if isinstance(v, bytes) else v
                    resp_headers[k] = v
                status = resp_headers.get(":status")
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == 1:
                data += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == 1:
                ended = True
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == 1:
                resets.append((ev.error_code, ended))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                resets.append((ev.error_code, ended))
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        if ended and resets:
            break
    sock.close()

    print(f"status: {status}")
    print(f"content-type: {resp_headers.get('content-type')}")
    print(f"body: {data.decode(errors='replace')[:1000]}")
    ok = status is not None and ended
    for code, after_response in resets:
        try:
            name = h2.errors.ErrorCodes(code).name
        except ValueError:
            name = f"error code {code}"
        when = "after the complete response" if after_response else "before the response was complete"
        print(f"reset: {name} {when}")
        if code != 0 or not after_response:
            ok = False
    if not ended:
        print("the response never completed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
