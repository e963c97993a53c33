//! Scenario: communication on shared pages. The parent spawns a PCT server, grants it two
//! pages and sends their handles in PCT arguments. Through the first, a pipe, it sends
//! messages of varied lengths (many times the ring's size, so it wraps again and again),
//! waking the server by PCT whenever the ring is full; the server checks order and contents
//! and sees the ring empty after each drain. On the second page both increment one counter,
//! and make LRPC-style calls (arguments in the shared page, the call by PCT).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use core::sync::atomic::{AtomicU64, Ordering};
    use libnet::abi::Error;
    use libnet::abi::cap::CapHandle;
    use libnet::ipc::{PipeReader, PipeWriter, SharedPage};
    use libnet::ring::RING_DATA_BYTES;
    use libnet::{env, pct, println, sys};

    const SERVER: u64 = 1;
    const MESSAGES: u64 = 3000;
    const INCREMENTS: u64 = 1000;
    const LRPC_CALLS: u64 = 1000;
    const LRPC_WORDS: usize = 64;
    /// First word of the LRPC argument block; word 1 holds the result.
    const LRPC_BLOCK: usize = 8;

    const CLIENT_PIPE_AT: u64 = 0x0000_5800_0000_0000;
    const CLIENT_SHARED_AT: u64 = 0x0000_5800_0000_1000;
    const SERVER_PIPE_AT: u64 = 0x0000_5900_0000_0000;
    const SERVER_SHARED_AT: u64 = 0x0000_5900_0000_4000;

    const CONNECT_PIPE: u64 = 1;
    const CONNECT_SHARED: u64 = 2;
    const DRAIN: u64 = 3;
    const INCREMENT: u64 = 4;
    const LRPC_SUM: u64 = 5;

    static PIPE_CAP: AtomicU64 = AtomicU64::new(0);
    static SHARED_CAP: AtomicU64 = AtomicU64::new(0);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static BAD: AtomicU64 = AtomicU64::new(0);
    static EMPTY: AtomicU64 = AtomicU64::new(0);

    fn message_length(sequence: u64) -> usize {
        1 + (sequence as usize * 37) % 500
    }

    fn message_byte(sequence: u64, index: usize) -> u8 {
        (sequence as usize * 7 + index) as u8
    }

    fn pipe_page() -> SharedPage {
        // SAFETY: CONNECT_PIPE attached the page there before any DRAIN (the client calls
        // in that order); it is never released.
        unsafe { SharedPage::from_raw(SERVER_PIPE_AT, CapHandle(PIPE_CAP.load(Ordering::Relaxed))) }
    }

    fn shared_page(at: u64, cap: &AtomicU64) -> SharedPage {
        // SAFETY: as `pipe_page`, for the counter page (CONNECT_SHARED, or `create` in the
        // client).
        unsafe { SharedPage::from_raw(at, CapHandle(cap.load(Ordering::Relaxed))) }
    }

    fn drain() -> [u64; 5] {
        let page = pipe_page();
        let reader = PipeReader::new(page.ring());
        let mut buffer = [0u8; 512];
        let mut received = 0;
        loop {
            match reader.receive(&mut buffer) {
                Ok(length) => {
                    let sequence = NEXT.fetch_add(1, Ordering::Relaxed);
                    let intact = length == message_length(sequence)
                        && buffer[..length]
                            .iter()
                            .enumerate()
                            .all(|(i, &b)| b == message_byte(sequence, i));
                    if !intact {
                        BAD.fetch_add(1, Ordering::Relaxed);
                    }
                    received += 1;
                }
                Err(Error::WouldBlock) => {
                    EMPTY.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(_) => {
                    BAD.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        [
            received,
            NEXT.load(Ordering::Relaxed),
            BAD.load(Ordering::Relaxed),
            EMPTY.load(Ordering::Relaxed),
            0,
        ]
    }

    fn serve(_caller: u64, arguments: [u64; 5]) -> [u64; 5] {
        let attach = |at, cap: &AtomicU64| {
            let page = SharedPage::attach(CapHandle(arguments[1]), at);
            if page.is_ok() {
                cap.store(arguments[1], Ordering::Relaxed);
            }
            [u64::from(page.is_ok()), 0, 0, 0, 0]
        };
        match arguments[0] {
            CONNECT_PIPE => attach(SERVER_PIPE_AT, &PIPE_CAP),
            CONNECT_SHARED => attach(SERVER_SHARED_AT, &SHARED_CAP),
            DRAIN => drain(),
            INCREMENT => {
                let page = shared_page(SERVER_SHARED_AT, &SHARED_CAP);
                let counter = &page.words()[0];
                for _ in 0..arguments[1] {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                [counter.load(Ordering::Relaxed), 0, 0, 0, 0]
            }
            LRPC_SUM => {
                let page = shared_page(SERVER_SHARED_AT, &SHARED_CAP);
                let words = page.words();
                let count = (arguments[1] as usize).min(LRPC_WORDS);
                let sum = words[LRPC_BLOCK..LRPC_BLOCK + count]
                    .iter()
                    .map(|w| w.load(Ordering::Relaxed))
                    .fold(0u64, u64::wrapping_add);
                words[1].store(sum, Ordering::Relaxed);
                [sum, 0, 0, 0, 0]
            }
            _ => [u64::MAX; 5],
        }
    }

    pub fn main() -> u8 {
        if env::argument() == SERVER {
            pct::serve(serve);
        }
        let server = sys::spawn("pipe", SERVER).expect("spawn");
        let pipe = SharedPage::create(CLIENT_PIPE_AT).expect("create");
        let shared = SharedPage::create(CLIENT_SHARED_AT).expect("create");
        let pipe_for_server = pipe.grant(server).expect("grant");
        let shared_for_server = shared.grant(server).expect("grant");
        let connected =
            loop {
                match sys::pct_call(server, [CONNECT_PIPE, pipe_for_server.raw(), 0, 0, 0]) {
                    Err(Error::WouldBlock) => sys::yield_now(),
                    other => break other.expect("connect")[0],
                }
            } + sys::pct_call(server, [CONNECT_SHARED, shared_for_server.raw(), 0, 0, 0])
                .expect("connect")[0];

        // The pipe.
        let writer = PipeWriter::new(pipe.ring());
        let mut message = [0u8; 512];
        let mut full = 0;
        for sequence in 0..MESSAGES {
            let length = message_length(sequence);
            for (i, byte) in message[..length].iter_mut().enumerate() {
                *byte = message_byte(sequence, i);
            }
            loop {
                match writer.send(&message[..length]) {
                    Ok(()) => break,
                    Err(Error::WouldBlock) => {
                        full += 1;
                        sys::pct_call(server, [DRAIN, 0, 0, 0, 0]).expect("drain");
                    }
                    Err(error) => panic!("send: {error:?}"),
                }
            }
        }
        let [_, received, bad, empty, _] =
            sys::pct_call(server, [DRAIN, 0, 0, 0, 0]).expect("drain");
        let wraps = pipe.ring().written_total() / RING_DATA_BYTES as u64;
        println!(
            "pipe: {received}/{MESSAGES} messages in order and intact ({bad} bad), ring wrapped {wraps} times, full {full} times, reader found it empty {empty} times"
        );

        // The shared counter.
        let counter = &shared.words()[0];
        let mut server_saw = 0;
        for _ in 0..10 {
            for _ in 0..INCREMENTS {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            server_saw = sys::pct_call(server, [INCREMENT, INCREMENTS, 0, 0, 0]).expect("inc")[0];
        }
        let total = counter.load(Ordering::Relaxed);
        println!(
            "shared memory: counter {total} (server saw {server_saw}), expected {}",
            20 * INCREMENTS
        );

        // LRPC: arguments in the shared page, control by PCT.
        let words = shared.words();
        let mut lrpc_correct = 0;
        let start = sys::ticks();
        for call in 0..LRPC_CALLS {
            let mut expected = 0u64;
            for (i, word) in words[LRPC_BLOCK..LRPC_BLOCK + LRPC_WORDS]
                .iter()
                .enumerate()
            {
                let value = call * 1000 + i as u64;
                word.store(value, Ordering::Relaxed);
                expected += value;
            }
            let result =
                sys::pct_call(server, [LRPC_SUM, LRPC_WORDS as u64, 0, 0, 0]).expect("lrpc")[0];
            if result == expected && words[1].load(Ordering::Relaxed) == expected {
                lrpc_correct += 1;
            }
        }
        println!(
            "lrpc: {lrpc_correct}/{LRPC_CALLS} calls correct ({} ticks)",
            sys::ticks() - start
        );
        sys::env_destroy(server).expect("env_destroy");
        let ok = connected == 2
            && received == MESSAGES
            && bad == 0
            && wraps >= 10
            && full > 0
            && empty > 0
            && total == 20 * INCREMENTS
            && server_saw == total
            && lrpc_correct == LRPC_CALLS;
        if ok { 0 } else { 1 }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
