#!/usr/bin/env python3
"""Deposit chat messages through an RFC 4976 MSRP relay (step 6 of scripts/interop-kamailio.sh).

The caller of a chat behind a relay: AUTH at the relay (Use-Path), INVITE through the SIP
proxy with a=path "<relay> <own>", then SENDs over the relay connection with
To-Path "<relay> <callee>". Passes (exit 0) when the relay answered every SEND with 200 and
the callee confirmed every message with a Success-Report REPORT "Status: 000 200" (mwi-store
sends it after the message is committed); BYE ends the call. Standard library only; every
wait is bounded.

  msrp-relay-deposit.py --proxy 127.0.0.1:5060 --relay 127.0.0.1:2856 \
      --from sip:alice@example.com --to sip:erin@example.com TEXT...
"""

import argparse
import re
import secrets
import socket
import sys
import time

TIMEOUT = 8.0
END_LINE = re.compile(rb"\r\n-------([A-Za-z0-9.+%=-]+)([$+#])\r\n")


def token() -> str:
    return secrets.token_hex(8)


class MsrpConnection:
    """One TCP connection to the relay; frames are read whole (RFC 4975 §7.1 end-line)."""

    def __init__(self, addr):
        self.sock = socket.create_connection(addr, timeout=TIMEOUT)
        self.buf = b""

    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def frame(self, deadline: float) -> str:
        while True:
            # The end-line carries the transaction id of the frame's first line.
            head = self.buf.split(b"\r\n", 1)[0].split()
            if len(head) >= 2:
                marker = b"\r\n-------" + head[1]
                at = self.buf.find(marker)
                if at >= 0:
                    end = self.buf.find(b"\r\n", at + len(marker))
                    if end >= 0:
                        frame, self.buf = self.buf[: end + 2], self.buf[end + 2 :]
                        return frame.decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no MSRP frame in time")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("relay closed the connection")
            self.buf += data
            if len(self.buf) > 1 << 20:
                raise ValueError("MSRP frame over 1 MiB")


def header(frame: str, name: str) -> str:
    m = re.search(r"^" + re.escape(name) + r":[ \t]*(.*?)\r?$", frame, re.M | re.I)
    return m.group(1) if m else ""


class SipUac:
    """Just enough of a UDP SIP UAC for INVITE/ACK/BYE through a proxy."""

    def __init__(self, proxy, local_ip, from_uri, to_uri):
        self.proxy = proxy
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_ip, 0))
        self.local = self.sock.getsockname()
        self.from_uri, self.to_uri = from_uri, to_uri
        self.call_id, self.from_tag, self.to_tag = token(), token(), ""
        self.route, self.remote_target = "", to_uri

    def request(self, method, ruri, cseq, body="", ctype=""):
        branch = "z9hG4bK" + token()
        lines = [
            f"{method} {ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local[0]}:{self.local[1]};branch={branch};rport",
            f"From: <{self.from_uri}>;tag={self.from_tag}",
            f"To: <{self.to_uri}>" + (f";tag={self.to_tag}" if self.to_tag else ""),
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:caller@{self.local[0]}:{self.local[1]}>",
            "Max-Forwards: 70",
        ]
        if self.route:
            lines.append(f"Route: {self.route}")
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n" + body).encode(), self.proxy)

    def final_response(self, method, deadline):
        """The first final response to `method`; retransmits nothing (loopback, bounded)."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no final response to {method}")
            self.sock.settimeout(left)
            msg = self.sock.recv(65536).decode(errors="replace")
            first = msg.split("\r\n", 1)[0]
            if not first.startswith("SIP/2.0 ") or not header(msg, "CSeq").endswith(method):
                continue
            if first[8:9] != "1":
                return int(first[8:11]), msg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxy", required=True, help="SIP proxy host:port (UDP)")
    ap.add_argument("--relay", required=True, help="MSRP relay host:port (TCP)")
    ap.add_argument("--from", dest="from_uri", required=True)
    ap.add_argument("--to", dest="to_uri", required=True)
    ap.add_argument("--local-ip", default="127.0.0.1")
    ap.add_argument("texts", nargs="+")
    args = ap.parse_args()
    host, port = args.proxy.rsplit(":", 1)
    proxy = (host, int(port))
    host, port = args.relay.rsplit(":", 1)
    relay_addr = (host, int(port))
    deadline = time.monotonic() + TIMEOUT

    # RFC 4976 §5.1: AUTH at our relay; its Use-Path goes first in our a=path.
    relay = MsrpConnection(relay_addr)
    own = f"msrp://{args.local_ip}:{relay.local_port()}/{token()};tcp"
    tid = token()
    relay.send(
        f"MSRP {tid} AUTH\r\nTo-Path: msrp://{relay_addr[0]}:{relay_addr[1]};tcp\r\n"
        f"From-Path: {own}\r\n-------{tid}$\r\n"
    )
    reply = relay.frame(deadline)
    use_path = header(reply, "Use-Path").split()
    if " 200 " not in reply.split("\r\n", 1)[0] + " " or not use_path:
        print(f"FAIL: AUTH at the relay: {reply.splitlines()[0]}")
        return 1
    print(f"relay Use-Path: {' '.join(use_path)}")

    sip = SipUac(proxy, args.local_ip, args.from_uri, args.to_uri)
    sdp = (
        f"v=0\r\no=caller 1 1 IN IP4 {args.local_ip}\r\ns=-\r\nc=IN IP4 {args.local_ip}\r\n"
        f"t=0 0\r\nm=message {relay.local_port()} TCP/MSRP *\r\n"
        f"a=accept-types:message/cpim text/plain\r\n"
        f"a=path:{' '.join(use_path)} {own}\r\na=setup:active\r\n"
    )
    sip.request("INVITE", args.to_uri, 1, sdp, "application/sdp")
    code, answer = sip.final_response("INVITE", deadline)
    if code != 200:
        print(f"FAIL: INVITE answered {code}")
        return 1
    sip.to_tag = re.search(r";tag=([^;>\s]+)", header(answer, "To")).group(1)
    contact = re.search(r"<([^>]+)>", header(answer, "Contact"))
    sip.remote_target = contact.group(1) if contact else args.to_uri
    sip.route = ", ".join(re.findall(r"^Record-Route:[ \t]*(.*?)\r?$", answer, re.M | re.I))
    far = re.search(r"^a=path:(.*?)\r?$", answer, re.M)
    if not far:
        print("FAIL: no a=path in the answer")
        return 1
    sip.request("ACK", sip.remote_target, 1)
    print(f"callee a=path: {far.group(1)}")

    to_path = " ".join(use_path + far.group(1).split())
    pending_200, pending_report = set(), set()
    for text in args.texts:
        tid, mid = token(), token()
        size = len(text.encode())
        relay.send(
            f"MSRP {tid} SEND\r\nTo-Path: {to_path}\r\nFrom-Path: {own}\r\nMessage-ID: {mid}\r\n"
            f"Success-Report: yes\r\nByte-Range: 1-{size}/{size}\r\nContent-Type: text/plain\r\n"
            f"\r\n{text}\r\n-------{tid}$\r\n"
        )
        pending_200.add(tid)
        pending_report.add(mid)

    greeting = ""
    deadline = time.monotonic() + TIMEOUT
    try:
        while pending_200 or pending_report:
            frame = relay.frame(deadline)
            first = frame.split("\r\n", 1)[0].split()
            if len(first) >= 3 and first[2] == "SEND":
                # The callee's greeting: answer this hop (the relay) with 200.
                greeting = greeting or frame.split("\r\n\r\n")[-1].split("\r\n-------")[0]
                relay.send(
                    f"MSRP {first[1]} 200 OK\r\nTo-Path: {header(frame, 'From-Path').split()[0]}\r\n"
                    f"From-Path: {own}\r\n-------{first[1]}$\r\n"
                )
            elif len(first) >= 3 and first[2] == "REPORT":
                if header(frame, "Status").startswith("000 200"):
                    pending_report.discard(header(frame, "Message-ID"))
            elif len(first) >= 3 and first[2] == "200":
                pending_200.discard(first[1])
            elif len(first) >= 3:
                print(f"FAIL: unexpected MSRP {' '.join(first[1:])}")
                return 1
    except (TimeoutError, ConnectionError) as e:
        print(f"FAIL: {e}: {len(pending_200)} SEND without 200, {len(pending_report)} without REPORT")
        return 1

    print(f"greeting: {greeting.strip().splitlines()[-1] if greeting.strip() else '(none)'}")
    print(f"{len(args.texts)} messages: relay 200 and Success-Report 200 for each")
    sip.request("BYE", sip.remote_target, 2)
    code, _ = sip.final_response("BYE", time.monotonic() + TIMEOUT)
    print(f"BYE {code}")
    return 0 if code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
