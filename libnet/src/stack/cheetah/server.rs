//! The server-side TCP engine: connections accepted on one port, requests received in order,
//! prebuilt responses sent from where they lie (or from a copy, without `cache`), every timer
//! driven by the caller's clock in milliseconds.
use super::Techniques;
use super::prebuilt::{CHUNK_BYTES, Prebuilt, sum_of};
use super::rto::Rto;
use super::segment::{
    ACK, Endpoints, FIN, HEADER_MAX_BYTES, Header, Incoming, PSH, RST, SYN, parse, write_header,
};
use super::seq::Seq;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Where frames go: `net_transmit` in an app, a list in a test. `false`: refused (counted;
/// the retransmission timer recovers).
pub trait Link {
    fn send(&mut self, pieces: &[&[u8]]) -> bool;
}

/// How the engine is set up.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    pub own_mac: [u8; 6],
    pub own_ip: [u8; 4],
    pub port: u16,
    pub techniques: Techniques,
    /// Connections at once, established or not (a SYN beyond is dropped and counted).
    pub max_connections: usize,
    /// Of those, still in their handshake.
    pub max_half_open: usize,
    /// TIME-WAIT records kept (the oldest is forgotten first, counted).
    pub time_wait_records: usize,
    /// Request bytes buffered per connection (the receive window).
    pub receive_window: usize,
    /// Bytes of the send buffer each connection copies into without `cache`.
    pub send_buffer: usize,
    /// Responses queued per connection before its requests wait (pipelining's bound).
    pub max_queued: usize,
    /// Segments one connection sends per call before the others get their turn.
    pub burst: usize,
    /// Segments all connections send per call: the ACKs they bring must find room in the
    /// receive ring (128 slots) before the app reads it again, or the kernel drops them.
    pub burst_per_call: usize,
}

impl ServerConfig {
    pub fn new(own_mac: [u8; 6], own_ip: [u8; 4], port: u16, techniques: Techniques) -> Self {
        ServerConfig {
            own_mac,
            own_ip,
            port,
            techniques,
            max_connections: 256,
            max_half_open: 128,
            time_wait_records: 512,
            receive_window: 16 * 1024,
            send_buffer: 32 * 1024,
            max_queued: 32,
            burst: 16,
            burst_per_call: 32,
        }
    }
}

/// What the engine counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerCounters {
    pub segments_in: u64,
    /// Frames that are not TCP to this port and address (dropped, never answered).
    pub not_ours: u64,
    pub syns: u64,
    /// Handshakes completed.
    pub accepted: u64,
    /// SYNs dropped because the connection quotas were full.
    pub refused_full: u64,
    /// Impossible flag combinations (SYN+FIN, no ACK on a connection, ...), dropped.
    pub bad_flags: u64,
    pub resets_in: u64,
    /// Resets in the window but not at its edge, answered with a challenge ACK (RFC 5961).
    pub resets_challenged: u64,
    pub resets_out: u64,
    pub out_of_window: u64,
    pub out_of_order: u64,
    /// Bytes received again (the overlap of a segment with what was already taken).
    pub duplicate_bytes: u64,
    /// ACKs of data never sent.
    pub ack_of_unsent: u64,
    pub duplicate_acks: u64,
    pub fast_retransmits: u64,
    pub timeouts: u64,
    pub segments_retransmitted: u64,
    pub window_probes: u64,
    /// Connections dropped after too many timeouts in a row, or idle too long.
    pub gave_up: u64,
    pub segments_out: u64,
    /// Segments with no data, SYN or FIN: pure ACKs.
    pub pure_acks: u64,
    /// FINs sent on a segment of their own, and on the last data segment.
    pub bare_fins: u64,
    pub fins_piggybacked: u64,
    /// Payload sums taken from the prebuilt chunks, and computed over the payload.
    pub sums_stored: u64,
    pub sums_computed: u64,
    /// Bytes copied into send buffers (without `cache`).
    pub bytes_copied: u64,
    pub tx_refused: u64,
    pub closed: u64,
    pub time_wait_entered: u64,
    pub time_wait_evicted: u64,
    /// Segments answered from a TIME-WAIT record.
    pub time_wait_answered: u64,
}

/// Longest a connection lingers half closed or silent.
const IDLE_MS: u64 = 30_000;
/// Timeouts in a row after which a connection is given up (the handshake gets fewer).
const MAX_BACKOFFS: u32 = 8;
const MAX_SYN_BACKOFFS: u32 = 5;
/// TIME-WAIT's length: short (a LAN's segments do not live a minute), but long enough to
/// answer a retransmitted FIN.
const TIME_WAIT_MS: u64 = 5_000;
/// The MSS this side announces (a full Ethernet frame) and assumes without an option.
const OWN_MSS: u16 = CHUNK_BYTES as u16;
const DEFAULT_MSS: usize = 536;

/// A closed connection remembered for TIME-WAIT: 24 bytes instead of a connection.
#[derive(Clone, Copy, Debug)]
struct TimeWait {
    peer_ip: [u8; 4],
    peer_port: u16,
    peer_mac: [u8; 6],
    snd_nxt: Seq,
    rcv_nxt: Seq,
    until_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    SynReceived,
    Established,
}

#[derive(Debug)]
struct Connection {
    endpoints: Endpoints,
    state: State,
    iss: Seq,
    snd_una: Seq,
    snd_nxt: Seq,
    snd_max: Seq,
    snd_wnd: u32,
    snd_wl1: Seq,
    snd_wl2: Seq,
    rcv_nxt: Seq,
    peer_fin: bool,
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    dup_acks: u32,
    rto: Rto,
    /// Retransmission (or persist) deadline.
    timer: Option<u64>,
    /// The segment being timed: its end and when it left.
    timing: Option<(Seq, u64)>,
    /// Responses queued, each with the sequence number of its first byte.
    out: VecDeque<(&'static Prebuilt, Seq)>,
    /// Sequence number after the last queued byte.
    stream_end: Seq,
    /// Without `cache`: the bytes from the first unacknowledged one to `copied_end`.
    copied: VecDeque<u8>,
    copied_end: Seq,
    /// The app is done: a FIN follows the queued responses.
    closing: bool,
    /// Our FIN went before the peer's (so this side keeps TIME-WAIT).
    fin_first: bool,
    input: Vec<u8>,
    input_fresh: bool,
    /// An ACK is owed (sent at the end of the call if no segment carried it).
    ack_owed: bool,
    /// The window last advertised was too small for a segment.
    window_was_shut: bool,
    last_heard_ms: u64,
}

impl Connection {
    fn data_start(&self) -> Seq {
        self.iss + 1
    }

    fn flight(&self) -> u32 {
        self.snd_nxt - self.snd_una
    }

    fn fin_seq(&self) -> Option<Seq> {
        self.closing.then_some(self.stream_end)
    }

    fn fin_acked(&self) -> bool {
        self.fin_seq().is_some_and(|fin| fin.before(self.snd_una))
    }

    fn window(&self, config: &ServerConfig) -> u16 {
        config
            .receive_window
            .saturating_sub(self.input.len())
            .min(u16::MAX as usize) as u16
    }

    /// Whether anything is left to send (data or the FIN).
    fn pending(&self) -> bool {
        self.snd_nxt.before(self.stream_end)
            || self
                .fin_seq()
                .is_some_and(|fin| self.snd_nxt.before_eq(fin))
    }

    /// The response holding `seq`, and `seq`'s offset in it.
    fn locate(&self, seq: Seq) -> Option<(&'static Prebuilt, usize)> {
        self.out.iter().find_map(|&(response, start)| {
            let offset = seq - start;
            (seq.within(start, response.len() as u32)).then_some((response, offset as usize))
        })
    }
}

/// The engine.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    connections: Vec<Connection>,
    time_wait: VecDeque<TimeWait>,
    counters: ServerCounters,
    ip_id: u16,
    random: u64,
    replies: Vec<&'static Prebuilt>,
    /// Segments this call may still send, and whether a call ran out of them.
    budget: usize,
    budget_spent: bool,
}

impl Server {
    /// An engine for `config`; `seed` seeds the initial sequence numbers.
    pub fn new(config: ServerConfig, seed: u64) -> Server {
        Server {
            config,
            connections: Vec::new(),
            time_wait: VecDeque::new(),
            counters: ServerCounters::default(),
            ip_id: seed as u16,
            random: seed | 1,
            replies: Vec::new(),
            budget: 0,
            budget_spent: false,
        }
    }

    pub fn counters(&self) -> ServerCounters {
        self.counters
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Connections held (any state) and TIME-WAIT records.
    pub fn held(&self) -> (usize, usize) {
        (self.connections.len(), self.time_wait.len())
    }

    /// The earliest timer, ms.
    pub fn next_deadline(&self) -> Option<u64> {
        // Segments the last call had no budget for, or requests the app has not seen yet (it
        // stopped at its per-call bound): now.
        if self.budget_spent {
            return Some(0);
        }
        if self
            .connections
            .iter()
            .any(|c| c.input_fresh && c.state == State::Established)
        {
            return Some(0);
        }
        let timers = self.connections.iter().filter_map(|c| c.timer);
        let idle = self.connections.iter().map(|c| c.last_heard_ms + IDLE_MS);
        let waits = self.time_wait.front().map(|record| record.until_ms);
        timers.chain(idle).chain(waits).min()
    }

    fn next_random(&mut self) -> u32 {
        // xorshift64*: initial sequence numbers nobody off the path can guess cheaply.
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        (self.random.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    /// Takes one frame the device verified.
    pub fn receive(&mut self, frame: &[u8], now: u64, link: &mut impl Link) {
        self.counters.segments_in += 1;
        let Some(segment) = parse(frame) else {
            self.counters.not_ours += 1;
            return;
        };
        if segment.destination_port != self.config.port
            || segment.destination_ip != self.config.own_ip
        {
            self.counters.not_ours += 1;
            return;
        }
        let found = self.connections.iter().position(|c| {
            c.endpoints.peer_ip == segment.source_ip && c.endpoints.peer_port == segment.source_port
        });
        match found {
            Some(index) => {
                if !self.segment_for(index, &segment, now, link) {
                    self.connections.swap_remove(index);
                    self.counters.closed += 1;
                }
            }
            None => self.segment_without_connection(&segment, now, link),
        }
    }

    /// A segment for no connection: a SYN opens one, a TIME-WAIT record answers, anything
    /// else but a reset is reset.
    fn segment_without_connection(
        &mut self,
        segment: &Incoming<'_>,
        now: u64,
        link: &mut impl Link,
    ) {
        let waiting = self.time_wait.iter().position(|record| {
            record.peer_ip == segment.source_ip && record.peer_port == segment.source_port
        });
        if segment.has(RST) {
            self.counters.resets_in += 1;
            return;
        }
        if let Some(index) = waiting {
            let record = self.time_wait[index];
            if segment.has(SYN) && !segment.has(ACK) && record.rcv_nxt.before(segment.seq) {
                // A new incarnation beyond the old one's numbers (RFC 6191's rule).
                self.time_wait.remove(index);
            } else {
                if segment.has(FIN) || segment.length() > 0 {
                    let endpoints =
                        self.endpoints_for(segment.source_ip, segment.source_port, record.peer_mac);
                    let header = Header {
                        seq: record.snd_nxt,
                        ack: record.rcv_nxt,
                        flags: ACK,
                        window: 0,
                        mss: None,
                        ip_id: self.next_ip_id(),
                    };
                    self.counters.time_wait_answered += 1;
                    emit(&mut self.counters, link, &endpoints, &header, &[], 0);
                }
                return;
            }
        }
        if segment.has(SYN) && !segment.has(ACK) {
            if segment.has(FIN) {
                self.counters.bad_flags += 1;
                return;
            }
            self.counters.syns += 1;
            let half_open = self
                .connections
                .iter()
                .filter(|c| c.state == State::SynReceived)
                .count();
            if self.connections.len() >= self.config.max_connections
                || half_open >= self.config.max_half_open
            {
                self.counters.refused_full += 1;
                return;
            }
            let iss = Seq(self.next_random());
            let mss = segment.mss.map_or(DEFAULT_MSS, |mss| {
                usize::from(mss).clamp(64, usize::from(OWN_MSS))
            });
            let connection = Connection {
                endpoints: self.endpoints_for(
                    segment.source_ip,
                    segment.source_port,
                    segment.source_mac,
                ),
                state: State::SynReceived,
                iss,
                snd_una: iss,
                snd_nxt: iss,
                snd_max: iss,
                snd_wnd: u32::from(segment.window),
                snd_wl1: segment.seq,
                snd_wl2: iss,
                rcv_nxt: segment.seq + 1,
                peer_fin: false,
                mss,
                cwnd: 10 * mss,
                ssthresh: 64 * 1024,
                dup_acks: 0,
                rto: Rto::default(),
                timer: None,
                timing: None,
                out: VecDeque::new(),
                stream_end: iss + 1,
                copied: VecDeque::new(),
                copied_end: iss + 1,
                closing: false,
                fin_first: false,
                input: Vec::new(),
                input_fresh: false,
                ack_owed: false,
                window_was_shut: false,
                last_heard_ms: now,
            };
            self.connections.push(connection);
            let index = self.connections.len() - 1;
            self.send_syn_ack(index, now, link);
            return;
        }
        // Refused (RFC 793, CLOSED): a reset that fits the segment.
        let endpoints =
            self.endpoints_for(segment.source_ip, segment.source_port, segment.source_mac);
        let header = if segment.has(ACK) {
            Header {
                seq: segment.ack,
                ack: Seq(0),
                flags: RST,
                window: 0,
                mss: None,
                ip_id: self.next_ip_id(),
            }
        } else {
            Header {
                seq: Seq(0),
                ack: segment.seq + segment.length(),
                flags: RST | ACK,
                window: 0,
                mss: None,
                ip_id: self.next_ip_id(),
            }
        };
        self.counters.resets_out += 1;
        emit(&mut self.counters, link, &endpoints, &header, &[], 0);
    }

    fn endpoints_for(&self, peer_ip: [u8; 4], peer_port: u16, peer_mac: [u8; 6]) -> Endpoints {
        Endpoints {
            own_mac: self.config.own_mac,
            peer_mac,
            own_ip: self.config.own_ip,
            peer_ip,
            own_port: self.config.port,
            peer_port,
        }
    }

    fn next_ip_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1);
        self.ip_id
    }

    fn send_syn_ack(&mut self, index: usize, now: u64, link: &mut impl Link) {
        let c = &mut self.connections[index];
        c.snd_nxt = c.iss + 1;
        c.snd_max = c.snd_max.max(c.snd_nxt);
        c.timer = Some(now + c.rto.timeout_ms());
        let endpoints = c.endpoints;
        let header = Header {
            seq: c.iss,
            ack: c.rcv_nxt,
            flags: SYN | ACK,
            window: c.window(&self.config),
            mss: Some(OWN_MSS),
            ip_id: 0,
        };
        let header = Header {
            ip_id: self.next_ip_id(),
            ..header
        };
        emit(&mut self.counters, link, &endpoints, &header, &[], 0);
    }

    fn send_ack(&mut self, index: usize, link: &mut impl Link) {
        let c = &mut self.connections[index];
        c.ack_owed = false;
        let window = c.window(&self.config);
        c.window_was_shut = usize::from(window) < c.mss;
        let endpoints = c.endpoints;
        let header = Header {
            seq: c.snd_nxt,
            ack: c.rcv_nxt,
            flags: ACK,
            window,
            mss: None,
            ip_id: 0,
        };
        let header = Header {
            ip_id: self.next_ip_id(),
            ..header
        };
        emit(&mut self.counters, link, &endpoints, &header, &[], 0);
    }

    fn send_reset(&mut self, index: usize, link: &mut impl Link) {
        let c = &self.connections[index];
        let endpoints = c.endpoints;
        let header = Header {
            seq: c.snd_nxt,
            ack: c.rcv_nxt,
            flags: RST | ACK,
            window: 0,
            mss: None,
            ip_id: 0,
        };
        let header = Header {
            ip_id: self.next_ip_id(),
            ..header
        };
        self.counters.resets_out += 1;
        emit(&mut self.counters, link, &endpoints, &header, &[], 0);
    }

    /// A segment for connection `index`; `false` when the connection is over.
    fn segment_for(
        &mut self,
        index: usize,
        segment: &Incoming<'_>,
        now: u64,
        link: &mut impl Link,
    ) -> bool {
        let piggyback = self.config.techniques.piggyback;
        let config = self.config;
        let c = &mut self.connections[index];
        let window = u32::from(c.window(&config));
        // Acceptability (RFC 793, 3.9 "SEGMENT ARRIVES").
        let length = segment.length();
        let acceptable = match (length, window) {
            (0, 0) => segment.seq == c.rcv_nxt,
            (0, _) => segment.seq.within(c.rcv_nxt, window),
            (_, 0) => false,
            (_, _) => {
                segment.seq.within(c.rcv_nxt, window)
                    || (segment.seq + (length - 1)).within(c.rcv_nxt, window)
            }
        };
        if segment.has(RST) {
            self.counters.resets_in += 1;
            if segment.seq == c.rcv_nxt {
                return false;
            }
            if acceptable {
                self.counters.resets_challenged += 1;
                self.send_ack(index, link);
            }
            return true;
        }
        if segment.has(SYN) {
            if c.state == State::SynReceived && segment.seq + 1 == c.rcv_nxt && !segment.has(ACK) {
                // The peer did not hear the SYN-ACK.
                self.send_syn_ack(index, now, link);
            } else {
                // RFC 5961 4.2: a challenge ACK, never a reset on a guess.
                self.counters.bad_flags += 1;
                self.send_ack(index, link);
            }
            return true;
        }
        if !acceptable {
            self.counters.out_of_window += 1;
            // Below the window (a retransmission): the ACK tells the peer where we are.
            self.send_ack(index, link);
            return true;
        }
        if !segment.has(ACK) {
            self.counters.bad_flags += 1;
            return true;
        }
        c.last_heard_ms = now;
        if c.state == State::SynReceived {
            if segment.ack != c.iss + 1 {
                // An ACK of something else: refused with the reset it asks for.
                let endpoints = c.endpoints;
                let header = Header {
                    seq: segment.ack,
                    ack: Seq(0),
                    flags: RST,
                    window: 0,
                    mss: None,
                    ip_id: self.next_ip_id(),
                };
                self.counters.resets_out += 1;
                emit(&mut self.counters, link, &endpoints, &header, &[], 0);
                return true;
            }
            c.state = State::Established;
            c.rto = Rto::default();
            c.timer = None;
            self.counters.accepted += 1;
        }
        let c = &mut self.connections[index];
        // The acknowledgement.
        if c.snd_max.before(segment.ack) {
            self.counters.ack_of_unsent += 1;
            self.send_ack(index, link);
            return true;
        }
        if c.snd_una.before(segment.ack) {
            let acked_data_from = c.snd_una.max(c.data_start());
            let acked_data_to = if c.stream_end.before(segment.ack) {
                c.stream_end
            } else {
                segment.ack
            };
            if acked_data_from.before(acked_data_to) && !config.techniques.cache {
                let bytes = (acked_data_to - acked_data_from) as usize;
                c.copied.drain(..bytes.min(c.copied.len()));
            }
            let acked = (segment.ack - c.snd_una) as usize;
            c.snd_una = segment.ack;
            if c.snd_nxt.before(c.snd_una) {
                c.snd_nxt = c.snd_una;
            }
            if let Some((end, sent)) = c.timing
                && end.before_eq(segment.ack)
            {
                c.rto.sample(now.saturating_sub(sent));
                c.timing = None;
            }
            c.rto.acknowledged();
            c.dup_acks = 0;
            c.cwnd = if c.cwnd < c.ssthresh {
                c.cwnd + acked.min(c.mss)
            } else {
                c.cwnd + (c.mss * c.mss / c.cwnd).max(1)
            };
            c.timer = (c.flight() > 0).then_some(now + c.rto.timeout_ms());
            while let Some(&(response, start)) = c.out.front() {
                if (start + response.len() as u32).before_eq(c.snd_una) {
                    c.out.pop_front();
                } else {
                    break;
                }
            }
        } else if segment.ack == c.snd_una
            && segment.payload.is_empty()
            && !segment.has(FIN)
            && c.flight() > 0
            && u32::from(segment.window) == c.snd_wnd
        {
            self.counters.duplicate_acks += 1;
            c.dup_acks += 1;
            if c.dup_acks == 3 {
                self.counters.fast_retransmits += 1;
                c.ssthresh = (c.flight() as usize / 2).max(2 * c.mss);
                c.cwnd = c.ssthresh;
                c.timing = None;
                let seq = c.snd_una;
                let end = c.snd_nxt;
                self.send_range(index, seq, end, now, link, true);
            }
        }
        let c = &mut self.connections[index];
        // The peer's window (RFC 793's WL1/WL2 rule: only from the newest segment).
        if c.snd_wl1.before(segment.seq)
            || (c.snd_wl1 == segment.seq && c.snd_wl2.before_eq(segment.ack))
        {
            c.snd_wnd = u32::from(segment.window);
            c.snd_wl1 = segment.seq;
            c.snd_wl2 = segment.ack;
        }
        // The data, in order only.
        let mut payload = segment.payload;
        let mut seq = segment.seq;
        if seq.before(c.rcv_nxt) {
            let overlap = ((c.rcv_nxt - seq) as usize).min(payload.len());
            self.counters.duplicate_bytes += overlap as u64;
            payload = &payload[overlap..];
            seq = seq + overlap as u32;
        }
        let fin_here = segment.has(FIN);
        if c.rcv_nxt.before(seq) {
            // A hole before it: dropped, and the duplicate ACK tells the peer what is missing.
            self.counters.out_of_order += 1;
            self.send_ack(index, link);
            return true;
        }
        let room = config.receive_window.saturating_sub(c.input.len());
        let taken = payload.len().min(room);
        if taken > 0 && !c.peer_fin {
            c.input.extend_from_slice(&payload[..taken]);
            c.rcv_nxt = c.rcv_nxt + taken as u32;
            c.input_fresh = true;
            c.ack_owed = true;
        }
        if fin_here && taken == payload.len() && !c.peer_fin {
            c.peer_fin = true;
            c.rcv_nxt = c.rcv_nxt + 1;
            c.input_fresh = true;
            c.ack_owed = true;
        } else if segment.length() > 0 && taken == 0 && payload.is_empty() {
            // Entirely old: say where we are.
            c.ack_owed = true;
        }
        if c.ack_owed && !piggyback {
            self.send_ack(index, link);
        }
        let c = &self.connections[index];
        if c.peer_fin && c.fin_acked() {
            // Over: the peer's FIN is answered now (nothing is left to carry the ACK).
            if c.ack_owed {
                self.send_ack(index, link);
            }
            self.finish(index, now);
            return false;
        }
        true
    }

    /// Connection `index` is over in both directions: a TIME-WAIT record if this side closed
    /// first.
    fn finish(&mut self, index: usize, now: u64) {
        let c = &self.connections[index];
        if !c.fin_first {
            return;
        }
        if self.time_wait.len() >= self.config.time_wait_records {
            self.time_wait.pop_front();
            self.counters.time_wait_evicted += 1;
        }
        self.counters.time_wait_entered += 1;
        self.time_wait.push_back(TimeWait {
            peer_ip: c.endpoints.peer_ip,
            peer_port: c.endpoints.peer_port,
            peer_mac: c.endpoints.peer_mac,
            snd_nxt: c.snd_nxt,
            rcv_nxt: c.rcv_nxt,
            until_ms: now + TIME_WAIT_MS,
        });
    }

    /// Without `cache`: copies the next queued bytes into the send buffer, as far as it holds.
    fn refill(&mut self, index: usize) {
        let config = self.config;
        let c = &mut self.connections[index];
        while c.copied.len() < config.send_buffer && c.copied_end.before(c.stream_end) {
            let Some((response, offset)) = c.locate(c.copied_end) else {
                break;
            };
            // Whole chunks only (or the response's end), so segments keep their stored sums.
            let room = config.send_buffer - c.copied.len();
            let length = if response.len() - offset <= room {
                response.len() - offset
            } else {
                ((offset + room) / CHUNK_BYTES * CHUNK_BYTES).saturating_sub(offset)
            };
            if length == 0 {
                break;
            }
            let mut slices = [&[][..]; 2];
            let used = response.slices(offset, length, &mut slices);
            for slice in &slices[..used] {
                c.copied.extend(slice.iter());
            }
            self.counters.bytes_copied += length as u64;
            c.copied_end = c.copied_end + length as u32;
        }
    }

    /// Sends what fits in the windows from `snd_nxt` on (or, for a fast retransmit, the one
    /// segment at `from`).
    fn send_range(
        &mut self,
        index: usize,
        from: Seq,
        _until: Seq,
        now: u64,
        link: &mut impl Link,
        single: bool,
    ) {
        let techniques = self.config.techniques;
        let burst = self.config.burst;
        let mut seq = from;
        for _ in 0..burst {
            if self.budget == 0 && !single {
                self.budget_spent = true;
                break;
            }
            if !techniques.cache {
                self.refill(index);
            }
            let config = self.config;
            let c = &mut self.connections[index];
            if c.state != State::Established {
                return;
            }
            let window = (c.snd_wnd as usize).min(c.cwnd);
            let in_flight = (seq - c.snd_una) as usize;
            let allowance = if single {
                c.mss
            } else {
                window.saturating_sub(in_flight)
            };
            let retransmitting = seq.before(c.snd_max);
            let fin = c.fin_seq();
            let data_limit = if techniques.cache {
                c.stream_end
            } else {
                c.copied_end
            };
            let window_view = Header {
                seq,
                ack: c.rcv_nxt,
                flags: ACK,
                window: c.window(&config),
                mss: None,
                ip_id: 0,
            };
            if seq.before(c.stream_end) {
                if allowance == 0 || !seq.before(data_limit) {
                    break;
                }
                let Some((response, offset)) = c.locate(seq) else {
                    break;
                };
                let limit = allowance.min(c.mss).min((data_limit - seq) as usize);
                let length = response.segment_length(offset, limit);
                // Sender-side silly-window avoidance (RFC 1122, 4.2.3.4): a segment shorter
                // than it could be waits while others are in flight (they bring ACKs).
                let full = response.segment_length(offset, c.mss.min((data_limit - seq) as usize));
                if length == 0 || (length < full && seq != c.snd_una && !single) {
                    break;
                }
                let end = seq + length as u32;
                let last = end == c.stream_end;
                let with_fin = last && fin.is_some() && techniques.piggyback;
                let mut flags = ACK;
                if offset + length == response.len() {
                    flags |= PSH;
                }
                if with_fin {
                    flags |= FIN;
                    self.counters.fins_piggybacked += 1;
                    if !c.peer_fin {
                        c.fin_first = true;
                    }
                }
                let mut header = Header {
                    flags,
                    ..window_view
                };
                header.ip_id = 0;
                let stored = if techniques.prebuilt {
                    response.chunk_sum(offset, length)
                } else {
                    None
                };
                let endpoints = c.endpoints;
                c.ack_owed = false;
                c.window_was_shut = usize::from(header.window) < c.mss;
                if retransmitting {
                    self.counters.segments_retransmitted += 1;
                }
                self.ip_id = self.ip_id.wrapping_add(1);
                header.ip_id = self.ip_id;
                let c = &self.connections[index];
                let mut slices = [&[][..]; 2];
                let used = if techniques.cache {
                    response.slices(offset, length, &mut slices)
                } else {
                    let start = (seq - c.snd_una.max(c.data_start())) as usize;
                    let (a, b) = c.copied.as_slices();
                    let mut used = 0;
                    let (mut from, mut left) = (start, length);
                    for part in [a, b] {
                        if left == 0 {
                            break;
                        }
                        if from >= part.len() {
                            from -= part.len();
                            continue;
                        }
                        let take = (part.len() - from).min(left);
                        slices[used] = &part[from..from + take];
                        used += 1;
                        left -= take;
                        from = 0;
                    }
                    used
                };
                let sum = match stored {
                    Some(sum) => {
                        self.counters.sums_stored += 1;
                        sum
                    }
                    None => {
                        self.counters.sums_computed += 1;
                        sum_of(&slices[..used])
                    }
                };
                let pieces: [&[u8]; 2] = [slices[0], slices[1]];
                emit(
                    &mut self.counters,
                    link,
                    &endpoints,
                    &header,
                    &pieces[..used],
                    sum,
                );
                self.budget = self.budget.saturating_sub(1);
                let c = &mut self.connections[index];
                seq = end + u32::from(with_fin);
                if single {
                    break;
                }
                c.snd_nxt = seq;
                if !retransmitting && c.timing.is_none() {
                    c.timing = Some((end, now));
                }
            } else if let Some(fin_seq) = fin
                && seq == fin_seq
            {
                if !c.peer_fin {
                    c.fin_first = true;
                }
                let endpoints = c.endpoints;
                let mut header = Header {
                    flags: ACK | FIN,
                    ..window_view
                };
                c.ack_owed = false;
                if retransmitting {
                    self.counters.segments_retransmitted += 1;
                }
                header.ip_id = self.next_ip_id();
                self.counters.bare_fins += 1;
                emit(&mut self.counters, link, &endpoints, &header, &[], 0);
                self.budget = self.budget.saturating_sub(1);
                let c = &mut self.connections[index];
                seq = seq + 1;
                if single {
                    break;
                }
                c.snd_nxt = seq;
            } else {
                break;
            }
            let c = &mut self.connections[index];
            c.snd_max = c.snd_max.max(c.snd_nxt);
            if c.timer.is_none() {
                c.timer = Some(now + c.rto.timeout_ms());
            }
        }
        let c = &mut self.connections[index];
        if c.state == State::Established && c.flight() == 0 {
            // Nothing in flight: a timer only to probe a shut window.
            c.timer = (c.pending() && c.snd_wnd == 0)
                .then(|| c.timer.unwrap_or(now + c.rto.timeout_ms()));
        }
    }

    /// Runs the app's `handler` on each connection with new request bytes (it may take bytes
    /// from the front of the input, queue responses and ask to close once they are sent),
    /// sends what is due and fires the timers. `handler(input, peer_closed, replies)`.
    pub fn run(
        &mut self,
        now: u64,
        link: &mut impl Link,
        handler: &mut impl FnMut(&mut Vec<u8>, bool, &mut Vec<&'static Prebuilt>) -> bool,
    ) {
        self.budget = self.config.burst_per_call;
        self.budget_spent = false;
        // Who goes first turns with each call, so no connection starves the others.
        if self.connections.len() > 1 {
            self.connections.rotate_left(1);
        }
        let mut index = 0;
        while index < self.connections.len() {
            if !self.step(index, now, link, handler) {
                self.send_reset(index, link);
                self.connections.swap_remove(index);
                self.counters.closed += 1;
                self.counters.gave_up += 1;
                continue;
            }
            let c = &self.connections[index];
            if c.peer_fin && c.fin_acked() {
                self.finish(index, now);
                self.connections.swap_remove(index);
                self.counters.closed += 1;
                continue;
            }
            index += 1;
        }
        while self
            .time_wait
            .front()
            .is_some_and(|record| record.until_ms <= now)
        {
            self.time_wait.pop_front();
        }
    }

    /// One connection's turn; `false`: give it up.
    fn step(
        &mut self,
        index: usize,
        now: u64,
        link: &mut impl Link,
        handler: &mut impl FnMut(&mut Vec<u8>, bool, &mut Vec<&'static Prebuilt>) -> bool,
    ) -> bool {
        let config = self.config;
        let c = &mut self.connections[index];
        if c.state == State::Established
            && c.input_fresh
            && !c.closing
            && c.out.len() < config.max_queued
        {
            c.input_fresh = false;
            let mut replies = core::mem::take(&mut self.replies);
            replies.clear();
            let close = handler(&mut c.input, c.peer_fin, &mut replies);
            // Requests left over after one that made progress get another turn.
            c.input_fresh = !replies.is_empty() && !c.input.is_empty();
            for response in replies.drain(..) {
                if response.is_empty() {
                    continue;
                }
                c.out.push_back((response, c.stream_end));
                c.stream_end = c.stream_end + response.len() as u32;
            }
            self.replies = replies;
            c.closing |= close;
            // The app read: a window shut for want of room may open again.
            if c.window_was_shut && usize::from(c.window(&config)) >= c.mss {
                c.ack_owed = true;
            }
        }
        let c = &mut self.connections[index];
        if now.saturating_sub(c.last_heard_ms) >= IDLE_MS {
            return false;
        }
        if let Some(deadline) = c.timer
            && deadline <= now
        {
            self.counters.timeouts += 1;
            let c = &mut self.connections[index];
            let limit = if c.state == State::SynReceived {
                MAX_SYN_BACKOFFS
            } else {
                MAX_BACKOFFS
            };
            if c.rto.backoffs() >= limit {
                return false;
            }
            c.rto.back_off();
            c.timer = None;
            c.timing = None;
            if c.state == State::SynReceived {
                self.send_syn_ack(index, now, link);
                return true;
            }
            if c.flight() == 0 && c.snd_wnd == 0 {
                // A window probe that sends no data (as Linux's): an old sequence number the
                // peer must answer with an ACK naming its window. The data stays aligned on
                // its chunks.
                self.counters.window_probes += 1;
                c.timer = Some(now + c.rto.timeout_ms());
                let endpoints = c.endpoints;
                self.ip_id = self.ip_id.wrapping_add(1);
                let header = Header {
                    seq: Seq(c.snd_una.0.wrapping_sub(1)),
                    ack: c.rcv_nxt,
                    flags: ACK,
                    window: c.window(&config),
                    mss: None,
                    ip_id: self.ip_id,
                };
                c.ack_owed = false;
                emit(&mut self.counters, link, &endpoints, &header, &[], 0);
                return true;
            }
            c.ssthresh = (c.flight() as usize / 2).max(2 * c.mss);
            c.cwnd = c.mss;
            c.snd_nxt = c.snd_una;
        }
        let c = &self.connections[index];
        if c.state == State::Established && c.pending() {
            let from = c.snd_nxt;
            let until = c.stream_end;
            self.send_range(index, from, until, now, link, false);
        }
        // The ACK waits for the next call (at once) if the budget, not the windows, held the
        // data back: then it rides on the data.
        let c = &self.connections[index];
        if c.ack_owed && !(self.budget == 0 && c.pending()) {
            self.send_ack(index, link);
        }
        true
    }
}

/// Sends one segment (headers written here, payload gathered as it lies).
fn emit(
    counters: &mut ServerCounters,
    link: &mut impl Link,
    endpoints: &Endpoints,
    header: &Header,
    payload: &[&[u8]],
    payload_sum: u16,
) {
    let mut buffer = [0u8; HEADER_MAX_BYTES];
    let length: usize = payload.iter().map(|piece| piece.len()).sum();
    let written = write_header(&mut buffer, endpoints, header, length, payload_sum);
    let mut pieces: [&[u8]; 4] = [&buffer[..written], &[], &[], &[]];
    for (slot, piece) in pieces[1..].iter_mut().zip(payload) {
        *slot = piece;
    }
    if link.send(&pieces[..1 + payload.len().min(3)]) {
        counters.segments_out += 1;
        if length == 0 && header.flags & (SYN | FIN | RST) == 0 {
            counters.pure_acks += 1;
        }
    } else {
        counters.tx_refused += 1;
    }
}
