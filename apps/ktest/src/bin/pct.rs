//! Scenario: protected control transfer. The parent spawns itself as a server (argument 1),
//! calls it synchronously with arguments in registers, sends to it asynchronously, and checks
//! that a capability without `CALL`, a target that is not waiting and a destroyed target are
//! refused. Nesting: a second server's capability, granted to the first, lets the first call
//! it from inside its own activation and return to the parent afterwards.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use core::sync::atomic::{AtomicU64, Ordering};
    use libnet::abi::cap::Rights;
    use libnet::abi::{Error, upcall::EnvStatus};
    use libnet::{env, pct, println, sys};

    const CALLS: u64 = 1000;
    const NESTED_CALLS: u64 = 100;
    static LAST_SENT: AtomicU64 = AtomicU64::new(0);

    fn serve(caller: u64, arguments: [u64; 5]) -> [u64; 5] {
        match arguments[0] {
            0 => [
                arguments[1] + arguments[2],
                caller,
                arguments[3] * 2,
                arguments[4] ^ 0xff,
                sys::self_id(),
            ],
            1 => {
                LAST_SENT.store(arguments[1], Ordering::Relaxed);
                [0; 5]
            }
            3 => {
                let inner = libnet::abi::cap::CapHandle(arguments[1]);
                match sys::pct_call(inner, [0, arguments[2], arguments[2], 0, 0]) {
                    Ok(results) => [results[0] + 1, results[1], results[4], 0, 0],
                    Err(error) => [u64::MAX, error as u64, 0, 0, 0],
                }
            }
            _ => [LAST_SENT.load(Ordering::Relaxed), 0, 0, 0, 0],
        }
    }

    pub fn main() -> u8 {
        if env::argument() == 1 {
            pct::serve(serve);
        }
        let me = sys::self_id();
        let server = sys::spawn("pct", 1).expect("spawn server");
        // Until the server reaches pct_wait it is not accepting calls.
        let mut would_block = 0;
        while sys::pct_call(server, [0, 1, 2, 3, 4]) == Err(Error::WouldBlock) {
            would_block += 1;
            sys::yield_now();
        }
        let mut correct = 0;
        for i in 0..CALLS {
            let results = sys::pct_call(server, [0, i, 2 * i, i + 7, i]).expect("pct_call");
            if results[..4] == [3 * i, me, 2 * (i + 7), i ^ 0xff] && results[4] != me {
                correct += 1;
            }
        }
        let server_id = sys::pct_call(server, [0; 5]).expect("pct_call")[4];
        let inner = sys::spawn("pct", 1).expect("spawn inner server");
        let inner_for_server = sys::cap_grant(inner, server, Rights::CALL).expect("cap_grant");
        let mut nested = 0;
        for i in 0..NESTED_CALLS {
            let results = loop {
                match sys::pct_call(server, [3, inner_for_server.raw(), i, 0, 0]) {
                    Ok([u64::MAX, error, ..]) if error == Error::WouldBlock as u64 => {
                        sys::yield_now()
                    }
                    other => break other.expect("nested pct_call"),
                }
            };
            if results[..2] == [2 * i + 1, server_id] && results[2] != server_id {
                nested += 1;
            }
        }
        sys::env_destroy(inner).expect("env_destroy");
        println!("pct nesting: {nested}/{NESTED_CALLS} calls through a second server correct");
        sys::pct_send(server, [1, 77, 0, 0, 0]).expect("pct_send");
        let sent = sys::pct_call(server, [2, 0, 0, 0, 0]).expect("pct_call")[0];

        // A derived capability to the server without CALL.
        let yield_only = sys::cap_grant(server, env::own(), Rights::YIELD).expect("cap_grant");
        let denied = sys::pct_call(yield_only, [0; 5]);
        // Ourselves: we are running, not waiting for calls.
        let not_waiting = sys::pct_call(env::own(), [0; 5]);
        sys::env_destroy(server).expect("env_destroy");
        let gone = sys::pct_call(server, [0; 5]);
        let status = sys::env_status(server);
        println!(
            "pct: {correct}/{CALLS} calls correct (waited {would_block} times for the server), async send delivered {}",
            sent == 77
        );
        println!(
            "pct refusals: without CALL {denied:?}, not waiting {not_waiting:?}, destroyed {gone:?} ({status:?})"
        );
        let ok = correct == CALLS
            && nested == NESTED_CALLS
            && sent == 77
            && denied == Err(Error::Denied)
            && not_waiting == Err(Error::WouldBlock)
            && gone == Err(Error::PeerGone)
            && status == Ok(EnvStatus::Aborted);
        if ok { 0 } else { 1 }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
