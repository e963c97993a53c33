# TCP edge cases against echo's stack on port 7, from a client scapy plays at the TCP level
# (from 10.0.2.3, an address the namespace does not hold, so Linux neither answers the
# guest's segments nor resets them; the guest learns the client's MAC from its first frame).
# Each step is bounded in count and time; the script exits non-zero with the reason.
import select, sys, time
from scapy.all import ARP, Ether, IP, TCP, Raw, conf, get_if_hwaddr, srp1
conf.verb = 0
TAP, GUEST, ME = sys.argv[1], "10.0.2.15", "10.0.2.3"
mine = get_if_hwaddr(TAP)
answer = srp1(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc="10.0.2.2", pdst=GUEST),
              iface=TAP, timeout=3)
if answer is None:
    sys.exit("no ARP answer for the guest")
guest_mac = answer[ARP].hwsrc
link = conf.L2socket(iface=TAP)

def send(segment):
    link.send(Ether(src=mine, dst=guest_mac) / IP(src=ME, dst=GUEST) / segment)

def segments(seconds):
    """The guest's TCP segments to ME in the next `seconds`."""
    deadline = time.time() + seconds
    while True:
        left = deadline - time.time()
        if left <= 0:
            return
        ready, _, _ = select.select([link], [], [], left)
        if not ready:
            return
        frame = link.recv()
        if frame is not None and IP in frame and TCP in frame \
                and frame[IP].src == GUEST and frame[IP].dst == ME:
            yield frame[TCP]

def seq_after(a, b):
    return ((a - b) & 0xffffffff) < 0x80000000

class Connection:
    def __init__(self, sport, dport=7):
        self.sport, self.dport = sport, dport
        self.seq, self.ack, self.window = 1000 + sport, 0, 65535
        self.echoed = b""
        self.probes = 0
        self.fin = False

    def send(self, flags="A", data=b"", seq=None):
        segment = TCP(sport=self.sport, dport=self.dport, flags=flags,
                      seq=self.seq if seq is None else seq, ack=self.ack,
                      window=self.window)
        send(segment / Raw(data) if data else segment)

    def connect(self):
        self.send("S")
        for tcp in segments(5):
            if tcp.sport == self.dport and tcp.dport == self.sport and tcp.flags.S and tcp.flags.A:
                self.seq += 1
                self.ack = (tcp.seq + 1) & 0xffffffff
                self.send("A")
                return
        sys.exit("no SYN-ACK on port %d" % self.dport)

    def pump(self, seconds, until=None):
        """Takes the guest's segments for this connection for up to `seconds` (or until
        `until()` holds): in-order data is accepted while the window is open, anything else
        answered with an ACK of what was accepted."""
        if until is not None and until():
            return
        for tcp in segments(seconds):
            if tcp.sport != self.dport or tcp.dport != self.sport:
                continue
            if tcp.flags.R:
                sys.exit("the guest reset connection %d" % self.sport)
            data = bytes(tcp.payload)
            if data:
                if self.window == 0:
                    self.probes += 1
                elif tcp.seq == self.ack:
                    self.echoed += data
                    self.ack = (self.ack + len(data)) & 0xffffffff
            if tcp.flags.F and (tcp.seq + len(data)) & 0xffffffff == self.ack:
                self.ack = (self.ack + 1) & 0xffffffff
                self.fin = True
            if data or tcp.flags.F:
                self.send("A")
            if until is not None and until():
                return

def wanted(connection, data, seconds=10):
    connection.pump(seconds, until=lambda: len(connection.echoed) >= len(data))
    if connection.echoed != data:
        sys.exit("echoed %r, wanted %r" % (connection.echoed[:80], data[:80]))

a = Connection(43001)
a.connect()
# Out of the window, ahead and behind: acknowledged, never delivered.
a.send("PA", b"AHEAD-OF-THE-WINDOW", seq=(a.seq + 10_000_000) & 0xffffffff)
a.send("PA", b"BEHIND-THE-WINDOW", seq=(a.seq - 100_000) & 0xffffffff)
# Reordered and overlapping: bytes 8..14 first, then 0..10, then 12..20.
stream = b"0123456789abcdefghij"
for start, end in [(8, 14), (0, 10), (12, 20)]:
    a.send("PA", stream[start:end], seq=(a.seq + start) & 0xffffffff)
    time.sleep(0.05)
a.seq += len(stream)
wanted(a, stream)
print("reordered and overlapping: %d bytes echoed exactly; out-of-window data never" % len(stream))
# Zero window: the client takes nothing for 4 s while echo has 3,000 bytes to send back.
a.window = 0
a.send("A")
bulk = bytes((i * 7 + 3) & 0xff for i in range(3000))
for start in range(0, len(bulk), 1000):
    a.send("PA", bulk[start:start + 1000])
    a.seq += len(bulk[start:start + 1000])
a.pump(4)
held = len(a.echoed) - len(stream)
if a.probes == 0:
    sys.exit("no zero-window probe in 4 s")
a.window = 65535
a.send("A")
wanted(a, stream + bulk, 15)
print("zero window: %d bytes taken while closed, %d probes, then all %d bytes intact" %
      (held, a.probes, len(bulk)))
# A reset in the window ends the connection; data after it is never echoed.
a.send("R")
time.sleep(0.2)
a.send("PA", b"AFTER-THE-RESET")
after = [tcp for tcp in segments(1.5) if tcp.dport == a.sport and bytes(tcp.payload)]
if after:
    sys.exit("data after the reset: %r" % bytes(after[0].payload))
# A new connection still works, and closes cleanly.
b = Connection(43002)
b.connect()
b.send("PA", b"after the edge cases\n")
b.seq += 21
wanted(b, b"after the edge cases\n")
b.send("FA")
b.seq += 1
b.pump(5, until=lambda: b.fin)
if not b.fin:
    sys.exit("no FIN from echo")
print("reset: nothing echoed after it; a new connection echoes and closes")
# A SYN to a port nobody owns: no answer from any stack.
send(TCP(sport=43003, dport=8082, flags="S", seq=1))
for tcp in segments(1.5):
    if tcp.sport == 8082:
        sys.exit("an answer for an unowned port: %r" % tcp)
print("unowned port: no answer")
print("edges done")
