//! The ASH app: checks that `ash_bind` and `ash_counter` refuse every bad argument, then (with
//! the boot argument `serve`) binds the stock handlers and sleeps while they answer.
//!
//! Refusals first: no, forged and wrong-object capabilities; an undecodable handler and one
//! the verifier refuses; wrong region lists (count, alignment, unmapped, kernel); a
//! `page_map`ped region page pinned (no unmap, no reprotect) and its revocation unbinding the
//! handler with an upcall; a second handler on one filter; the per-environment quota; a bad
//! counter index; and that deleting a handler's capability, or unbinding its filter, ends it.
//! Prints `ash refusals: ... all as expected: true`.
//!
//! Serving: the ARP responder and ICMP echo for the host's address (monitor filters: start it
//! with `monitor=ashd`), UDP echo on port 7, remote increment on 9000 (its counter a page of
//! this app's), and on 9001 a handler whose runtime check fails on every packet; message
//! vectoring on 9002 (checksum integrated with the copy) and on 9005 (copy, then checksum).
//! On 9007 a handler raises the packet-arrival upcall with the datagram's first eight bytes
//! as its argument; the app prints what the upcall carried. Port 9003 has a filter without
//! handler: a datagram there ends the run. For
//! `cargo xtask bench ash`, port 9004 is a UDP echo done by this app through its ring and
//! `net_transmit` (the same reply the handler on port 7 builds), and a datagram to port 9006
//! prints the kernel's arrival-to-send counters and every handler's runs and cycles
//! (`ashd: report TOKEN: ...`). The app prints `ashd: ready`, then blocks in `net_wait`; every
//! time it wakes it says why, so the judge can see it was not woken while the handlers
//! answered. Every frame it finds in a ring is checked against that ring's filters
//! (`witness.rs`); at the end it prints each ring's kernel counts and the mismatches found.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
libnet::entry!(main);

#[cfg(target_os = "none")]
mod witness;

#[cfg(target_os = "none")]
mod app {
    use crate::witness::Witness;
    use alloc::vec::Vec;
    use ash::builder::{Builder, R0, R1};
    use ash::ir::{Mem, Width};
    use core::sync::atomic::{AtomicU64, Ordering};
    use libnet::abi::cap::{CapHandle, Rights};
    use libnet::abi::net::AshCounter;
    use libnet::net::{self, FilterBinding, HandlerBinding, Ring};
    use libnet::{Error, println};

    /// Pages of this app's own (loader-mapped) memory, for handler regions.
    #[repr(C, align(4096))]
    pub struct Pages<const N: usize>(pub [[AtomicU64; 512]; N]);

    impl<const N: usize> Pages<N> {
        pub const fn new() -> Self {
            Pages([const { [const { AtomicU64::new(0) }; 512] }; N])
        }
        pub fn address(&self) -> u64 {
            self.0.as_ptr() as u64
        }
    }

    pub static COUNTER: Pages<1> = Pages::new();
    /// The message-vectoring receiver's buffers and status words.
    pub static VECTOR: Pages<4> = Pages::new();
    pub static VECTOR_STATUS: Pages<1> = Pages::new();
    /// The same for the copy-then-checksum receiver.
    pub static VECTOR_TWO_PASS: Pages<4> = Pages::new();
    pub static VECTOR_TWO_PASS_STATUS: Pages<1> = Pages::new();
    pub static SPARE: Pages<1> = Pages::new();
    const SLOTS: usize = 8;
    const FILTERS: usize = 12;
    static RINGS: [Ring<SLOTS>; FILTERS] = [const { Ring::new() }; FILTERS];

    /// Where `page_map` puts the page that must be refused as a region.
    const MAPPED_PAGE: u64 = 0x5100_0000_0000;

    fn bind(expression: &str, ring: usize, monitor: CapHandle) -> Result<FilterBinding, Error> {
        bind_filters(&compile(expression)?, ring, monitor)
    }

    fn compile(expression: &str) -> Result<Vec<dpf::Filter>, Error> {
        dpf::frontend::compile(expression, dpf::FilterId(0)).map_err(|_| Error::InvalidArgument)
    }

    fn bind_filters(
        filters: &[dpf::Filter],
        ring: usize,
        monitor: CapHandle,
    ) -> Result<FilterBinding, Error> {
        let (address, bytes) = RINGS[ring].region();
        // The first conjunction is the IPv4 one for the expressions used here; the handler
        // goes on it.
        let mut first = None;
        for filter in filters {
            let binding = net::filter_bind(&dpf::wire::encode(filter), address, bytes, monitor)?;
            first.get_or_insert(binding);
        }
        first.ok_or(Error::InvalidArgument)
    }

    /// Binds `expression` to ring `ring` as [`bind`] does, and tells the witness.
    fn bind_witnessed(
        witness: &mut Witness,
        expression: &str,
        ring: usize,
        monitor: CapHandle,
    ) -> Result<FilterBinding, Error> {
        let filters = compile(expression)?;
        let binding = bind_filters(&filters, ring, monitor)?;
        witness.bound(ring, RINGS[ring].region().0, &filters);
        Ok(binding)
    }

    /// Takes every frame in ring `ring`, each checked by the witness; whether there was one.
    fn take_all(witness: &mut Witness, ring: usize) -> bool {
        let mut any = false;
        while let Some((index, length)) = RINGS[ring].peek() {
            witness.check(ring, RINGS[ring].frame(index, length));
            RINGS[ring].release(index);
            any = true;
        }
        any
    }

    fn encoded(handler: Result<ash::UnverifiedHandler, ash::builder::BuildError>) -> Vec<u8> {
        match handler {
            Ok(handler) => ash::wire::encode(&handler),
            // The stock handlers always build; an empty encoding is refused by the kernel.
            Err(_) => Vec::new(),
        }
    }

    /// A handler whose runtime check fails on every packet: it loads the byte just past the
    /// end (r0 is the length).
    fn failing() -> Vec<u8> {
        let mut b = Builder::new();
        b.load(R1, Width::B1, Mem::packet_at(R0, 0))
            .exit(ash::Verdict::Consume);
        encoded(b.finish())
    }

    /// A handler that raises the packet-arrival upcall with the UDP payload's first eight
    /// bytes (big-endian; the filter guarantees UDP, the client sends no IPv4 options) as its
    /// argument, and consumes the datagram; a shorter one is dropped.
    fn upcalling() -> Vec<u8> {
        let mut b = Builder::new();
        let short = b.label();
        b.if_len_less(50, short)
            .load(R1, Width::B8, Mem::packet(42))
            .call(ash::ir::Call::Upcall)
            .exit(ash::Verdict::Consume)
            .bind(short)
            .exit(ash::Verdict::Drop);
        encoded(b.finish())
    }

    /// The handler id and argument of the last handler upcall (0: none yet).
    static HANDLER_UPCALL: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

    fn on_handler_upcall(handler: u64, argument: u64) {
        HANDLER_UPCALL[1].store(argument, Ordering::Relaxed);
        HANDLER_UPCALL[0].store(handler, Ordering::Release);
    }

    fn expect(ok: &mut bool, what: &str, got: Result<u64, Error>, wanted: Result<u64, Error>) {
        if got != wanted {
            println!("ashd: {what}: got {got:?}, wanted {wanted:?}");
            *ok = false;
        }
    }

    fn id(result: Result<HandlerBinding, Error>) -> Result<u64, Error> {
        result.map(|_| 0)
    }

    /// Binds remote increment with `page` (mapped at [`MAPPED_PAGE`]) as its counter: unmap
    /// and reprotect are refused while it is bound (the first refusal returned); deleting the
    /// page's capability unbinds the handler, whose capability then names nothing, and the
    /// upcall names it (whether all that held).
    fn revocable_region(
        page: CapHandle,
        binding: CapHandle,
        increment: &[u8],
    ) -> (Result<u64, Error>, bool) {
        if let Err(error) = libnet::sys::page_map(page, MAPPED_PAGE, Rights::READ | Rights::WRITE) {
            return (Err(error), false);
        }
        let handler = match net::ash_bind(binding, increment, &[MAPPED_PAGE]) {
            Ok(handler) => handler,
            Err(error) => return (Err(error), false),
        };
        let unmap = libnet::sys::page_unmap(MAPPED_PAGE).map(|()| 0);
        let protect = libnet::sys::page_protect(MAPPED_PAGE, Rights::READ).map(|()| 0);
        if unmap != protect {
            println!("ashd: pinned page: unmap {unmap:?}, protect {protect:?}");
            return (Ok(0), false);
        }
        let deleted = libnet::sys::cap_delete(page);
        let gone = net::ash_counter(handler.capability, AshCounter::Runs);
        // The upcall comes when this environment next runs.
        libnet::sys::yield_now();
        let named = DISABLED_UPCALL[0].load(Ordering::Acquire) == handler.id
            && DISABLED_UPCALL[1].load(Ordering::Relaxed)
                == libnet::abi::upcall::ASH_UNBOUND_REVOKED;
        DISABLED_UPCALL[0].store(0, Ordering::Relaxed);
        println!(
            "ashd: pinned page: unmap {unmap:?}, protect {protect:?}; page deleted {deleted:?}, handler then {gone:?}, upcall named it: {named}"
        );
        let _ = libnet::sys::cap_delete(handler.capability);
        (
            unmap,
            deleted.is_ok() && gone == Err(Error::InvalidCapability) && named,
        )
    }

    /// The refusal checks; whether every one came out as expected.
    pub fn refusals(mac: [u8; 6], ipv4: [u8; 4]) -> bool {
        let mut ok = true;
        if let Err(error) = libnet::upcall::on_ash_disabled(on_disabled) {
            println!("ashd: registering the handler-disabled upcall: {error:?}");
            return false;
        }
        let increment = encoded(libnet::handlers::remote_increment());
        let counter = [COUNTER.address()];
        let none = net::ash_bind(CapHandle::NONE, &increment, &counter);
        let forged = net::ash_bind(CapHandle(0x7777_0000_0042), &increment, &counter);
        let page = libnet::sys::page_alloc(libnet::abi::syscall::ANY_FRAME);
        let wrong_object = match page {
            Ok(page) => id(net::ash_bind(page, &increment, &counter)),
            Err(error) => Err(error),
        };
        expect(
            &mut ok,
            "no capability",
            id(none),
            Err(Error::InvalidCapability),
        );
        expect(
            &mut ok,
            "forged capability",
            id(forged),
            Err(Error::InvalidCapability),
        );
        expect(
            &mut ok,
            "page capability",
            wrong_object,
            Err(Error::InvalidCapability),
        );
        let binding = match bind("ip and udp dst port 7100", 0, CapHandle::NONE) {
            Ok(binding) => binding.capability,
            Err(error) => {
                println!("ashd: binding the test filter: {error:?}");
                return false;
            }
        };
        let garbage = net::ash_bind(binding, &[0xa5; 40], &[]);
        expect(
            &mut ok,
            "garbage handler",
            id(garbage),
            Err(Error::InvalidArgument),
        );
        let mut backward = ash::UnverifiedHandler::default();
        backward.code.push(ash::ir::Insn::Mov {
            dst: ash::ir::Reg(1),
            src: ash::ir::Operand::Imm(0),
        });
        backward.code.push(ash::ir::Insn::Jump { target: 0 });
        let refused = net::ash_bind(binding, &ash::wire::encode(&backward), &[]);
        expect(
            &mut ok,
            "backward jump",
            id(refused),
            Err(Error::InvalidArgument),
        );
        let missing = net::ash_bind(binding, &increment, &[]);
        expect(
            &mut ok,
            "no region",
            id(missing),
            Err(Error::InvalidArgument),
        );
        let unaligned = net::ash_bind(binding, &increment, &[COUNTER.address() + 8]);
        expect(
            &mut ok,
            "unaligned region",
            id(unaligned),
            Err(Error::InvalidArgument),
        );
        let unmapped = net::ash_bind(binding, &increment, &[0x5555_0000_0000]);
        expect(
            &mut ok,
            "unmapped region",
            id(unmapped),
            Err(Error::BadAddress),
        );
        let kernel = net::ash_bind(binding, &increment, &[0xffff_8000_0000_0000]);
        expect(&mut ok, "kernel region", id(kernel), Err(Error::BadAddress));
        // A page_map'ped page is pinned while bound: neither unmapped nor reprotected; deleting
        // its capability unbinds the handler first, and an upcall says so.
        let (pinned, revoked) = match page {
            Ok(page) => revocable_region(page, binding, &increment),
            Err(error) => (Err(error), false),
        };
        expect(
            &mut ok,
            "page_map'ped region pinned",
            pinned,
            Err(Error::AddressInUse),
        );
        if !revoked {
            println!("ashd: revoking the page did not unbind and name the handler");
            ok = false;
        }
        let too_many = net::ash_bind(binding, &increment, &[COUNTER.address(); 9]);
        expect(
            &mut ok,
            "nine regions",
            id(too_many),
            Err(Error::InvalidArgument),
        );
        // A good one, then a second on the same filter.
        let handler = match net::ash_bind(binding, &increment, &counter) {
            Ok(handler) => handler.capability,
            Err(error) => {
                println!("ashd: binding remote increment: {error:?}");
                return false;
            }
        };
        let second = net::ash_bind(binding, &encoded(libnet::handlers::udp_echo()), &[]);
        expect(
            &mut ok,
            "second handler",
            id(second),
            Err(Error::AddressInUse),
        );
        let runs = net::ash_counter(handler, AshCounter::Runs);
        expect(&mut ok, "runs", runs, Ok(0));
        let bad_index = libnet::sys::syscall5(
            libnet::abi::Syscall::AshCounter,
            [handler.raw(), 99, 0, 0, 0],
        );
        expect(
            &mut ok,
            "counter 99",
            bad_index,
            Err(Error::InvalidArgument),
        );
        let of_binding = net::ash_counter(binding, AshCounter::Runs);
        expect(
            &mut ok,
            "counter of a binding",
            of_binding,
            Err(Error::InvalidCapability),
        );
        // Quota: seven more handlers fit, the ninth does not.
        let echo = encoded(libnet::handlers::udp_echo());
        let mut quota = Ok(0);
        let mut extra = Vec::new();
        for index in 0..8 {
            let port = 7101 + index;
            let expression = alloc::format!("ip and udp dst port {port}");
            match bind(&expression, 1 + index as usize, CapHandle::NONE) {
                Ok(binding) => extra.push(binding.capability),
                Err(error) => {
                    println!("ashd: binding {expression}: {error:?}");
                    return false;
                }
            }
            quota = id(net::ash_bind(extra[index as usize], &echo, &[]));
            if index < 7 && quota.is_err() {
                println!("ashd: handler {index} of the quota: {quota:?}");
                ok = false;
            }
        }
        expect(&mut ok, "ninth handler", quota, Err(Error::Exhausted));
        // Deleting the handler's capability unbinds it: a new one may take the filter.
        let deleted = libnet::sys::cap_delete(handler);
        expect(&mut ok, "delete handler", deleted, Ok(1));
        let stale = net::ash_counter(handler, AshCounter::Runs);
        expect(
            &mut ok,
            "deleted handler's counter",
            stale,
            Err(Error::InvalidCapability),
        );
        let again = net::ash_bind(binding, &echo, &[]);
        expect(&mut ok, "rebind after delete", id(again), Ok(0));
        // Unbinding the filter ends its handler.
        if let Ok(again) = again {
            let unbound = net::filter_unbind(binding);
            expect(&mut ok, "unbind filter", unbound, Ok(0));
            let gone = net::ash_counter(again.capability, AshCounter::Runs);
            expect(
                &mut ok,
                "handler of an unbound filter",
                gone,
                Err(Error::InvalidCapability),
            );
        }
        for binding in extra {
            let _ = net::filter_unbind(binding);
        }
        let _ = (mac, ipv4);
        println!(
            "ash refusals: capabilities {:?}/{:?}/{:?}, garbage {:?}, verifier {:?}, regions {:?}/{:?}/{:?}/{:?}/{:?}/{:?}, second {:?}, quota {:?}; all as expected: {ok}",
            none.map(|_| ()),
            forged.map(|_| ()),
            wrong_object,
            garbage.map(|_| ()),
            refused.map(|_| ()),
            missing.map(|_| ()),
            unaligned.map(|_| ()),
            unmapped.map(|_| ()),
            kernel.map(|_| ()),
            pinned,
            too_many.map(|_| ()),
            second.map(|_| ()),
            quota,
        );
        ok
    }

    /// Reports (and empties) every slot a message-vectoring handler filled: its length and
    /// whether its bytes are the pattern the client sends (byte `i` = `i * 7 + 3`).
    fn check_vectored(what: &str, buffers: &Pages<4>, statuses: &Pages<1>) {
        for slot in 0..libnet::handlers::VECTOR_SLOTS as usize {
            let status = statuses.0[0][slot].load(Ordering::Acquire);
            if status & libnet::handlers::VECTOR_FULL == 0 {
                continue;
            }
            let length = (status & 0xffff_ffff) as usize;
            let start = slot * libnet::handlers::VECTOR_SLOT_BYTES as usize;
            let intact = (0..length).all(|i| {
                let at = start + i;
                let word = buffers.0[at / 4096][(at % 4096) / 8].load(Ordering::Relaxed);
                word.to_le_bytes()[at % 8] == (i * 7 + 3) as u8
            });
            println!("ashd: vectored{what} slot {slot}: {length} bytes, as sent: {intact}");
            statuses.0[0][slot].store(0, Ordering::Release);
        }
    }

    /// The handler id and aborts the handler-disabled upcall named (0: none yet).
    static DISABLED_UPCALL: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

    fn on_disabled(handler: u64, aborts: u64) {
        DISABLED_UPCALL[1].store(aborts, Ordering::Relaxed);
        DISABLED_UPCALL[0].store(handler, Ordering::Release);
    }

    /// Every frame the NIC gave the kernel is accounted for exactly once: malformed, matched
    /// by no filter, taken by a handler (consumed, dropped, or aborted), or copied to a ring
    /// (or dropped for a full one). ashd's filters are disjoint, so no frame reaches two rings.
    fn print_frame_accounting() {
        use libnet::abi::net::Counter;
        let read = |counter: Counter| net::counter(counter as u64).unwrap_or(u64::MAX);
        let received = read(Counter::RxFrames);
        let parts = [
            read(Counter::Malformed),
            read(Counter::NoMatch),
            read(Counter::AshConsumed),
            read(Counter::AshDropped),
            read(Counter::AshAborts),
            read(Counter::Delivered),
            read(Counter::RingFull),
        ];
        let sum: u64 = parts.iter().sum();
        println!(
            "ashd: frames received {received} = malformed {} + unmatched {} + consumed {} + dropped {} + aborted {} + delivered {} + ring full {}: balanced {}",
            parts[0],
            parts[1],
            parts[2],
            parts[3],
            parts[4],
            parts[5],
            parts[6],
            sum == received
        );
    }

    /// Rings of the filters without handler: quit, the app's own echo, reports.
    const QUIT_RING: usize = 7;
    const ECHO_RING: usize = 8;
    const REPORT_RING: usize = 9;

    /// Answers every datagram in the echo ring as the UDP echo handler would: the frame back
    /// with Ethernet and IPv4 addresses and UDP ports swapped (the checksums hold), sent with
    /// `net_transmit`. Frames too short for those headers are dropped.
    fn echo_from_ring(mac: [u8; 6], witness: &mut Witness) {
        let ring = &RINGS[ECHO_RING];
        let mut reply = [0u8; libnet::abi::net::FRAME_MAX_BYTES as usize];
        while let Some((index, length)) = ring.peek() {
            let frame = ring.frame(index, length);
            witness.check(ECHO_RING, frame);
            let header = frame.get(14).map_or(0, |byte| usize::from(byte & 0x0f) * 4);
            if header >= 20 && length >= 14 + header + 8 {
                let reply = &mut reply[..length];
                reply.copy_from_slice(frame);
                reply[..6].copy_from_slice(&frame[6..12]);
                reply[6..12].copy_from_slice(&mac);
                reply[26..30].copy_from_slice(&frame[30..34]);
                reply[30..34].copy_from_slice(&frame[26..30]);
                let udp = 14 + header;
                reply[udp..udp + 2].copy_from_slice(&frame[udp + 2..udp + 4]);
                reply[udp + 2..udp + 4].copy_from_slice(&frame[udp..udp + 2]);
                if let Err(error) = net::transmit(&[reply]) {
                    println!("ashd: echo: {error:?}");
                }
            }
            ring.release(index);
        }
    }

    /// For every datagram in the report ring (its payload a token), prints the kernel's
    /// arrival-to-send counters and each handler's runs and cycles, for the bench to diff.
    fn report(handlers: &[(&str, CapHandle, u64)], witness: &mut Witness) {
        use core::fmt::Write;
        use libnet::abi::net::Counter;
        let ring = &RINGS[REPORT_RING];
        while let Some((index, length)) = ring.peek() {
            let frame = ring.frame(index, length);
            witness.check(REPORT_RING, frame);
            let header = frame.get(14).map_or(0, |byte| usize::from(byte & 0x0f) * 4);
            let token: u64 = frame
                .get(14 + header + 8..)
                .unwrap_or(&[])
                .iter()
                .take_while(|byte| byte.is_ascii_digit())
                .fold(0, |token, byte| {
                    token.wrapping_mul(10).wrapping_add(u64::from(byte - b'0'))
                });
            ring.release(index);
            let read = |counter: Counter| net::counter(counter as u64).unwrap_or(u64::MAX);
            let mut line = alloc::string::String::new();
            let _ = write!(
                line,
                "ashd: report {token}: arrival-to-send {} {} {} {}",
                read(Counter::ArrivalToSendFrames),
                read(Counter::ArrivalToSendCycles),
                read(Counter::ArrivalToSendTicked),
                read(Counter::ArrivalToSendTickedCycles)
            );
            for (expression, handler, _) in handlers {
                let read = |counter| net::ash_counter(*handler, counter).unwrap_or(u64::MAX);
                let _ = write!(
                    line,
                    "; {} {} {}",
                    expression.rsplit(' ').next().unwrap_or(expression),
                    read(AshCounter::Runs),
                    read(AshCounter::Cycles)
                );
            }
            println!("{line}");
        }
    }

    /// Binds the stock handlers and sleeps until a datagram reaches port 9003.
    pub fn serve(mac: [u8; 6], ipv4: [u8; 4]) -> u8 {
        let monitor = net::boot_monitor();
        if let Err(error) = libnet::upcall::on_handler_upcall(on_handler_upcall) {
            println!("ashd: registering the handler upcall: {error:?}");
            return 3;
        }
        let stock: [(&str, Vec<u8>, Vec<u64>); 8] = [
            (
                "arp",
                encoded(libnet::handlers::arp_responder(mac, ipv4)),
                Vec::new(),
            ),
            (
                "icmp",
                encoded(libnet::handlers::icmp_echo(ipv4)),
                Vec::new(),
            ),
            (
                "ip and udp dst port 7",
                encoded(libnet::handlers::udp_echo()),
                Vec::new(),
            ),
            (
                "ip and udp dst port 9000",
                encoded(libnet::handlers::remote_increment()),
                alloc::vec![COUNTER.address()],
            ),
            ("ip and udp dst port 9001", failing(), Vec::new()),
            (
                "ip and udp dst port 9002",
                encoded(libnet::handlers::message_vectoring()),
                alloc::vec![VECTOR.address(), VECTOR_STATUS.address()],
            ),
            (
                "ip and udp dst port 9005",
                encoded(libnet::handlers::message_vectoring_two_pass()),
                alloc::vec![VECTOR_TWO_PASS.address(), VECTOR_TWO_PASS_STATUS.address()],
            ),
            ("ip and udp dst port 9007", upcalling(), Vec::new()),
        ];
        let mut handlers = Vec::new();
        let mut witness = Witness::new(FILTERS);
        for (index, (expression, handler, regions)) in stock.iter().enumerate() {
            let bound = bind_witnessed(&mut witness, expression, index, monitor)
                .and_then(|binding| net::ash_bind(binding.capability, handler, regions));
            match bound {
                Ok(bound) => handlers.push((*expression, bound.capability, bound.id)),
                Err(error) => {
                    println!("ashd: binding {expression:?}: {error:?}");
                    return 3;
                }
            }
        }
        for (expression, ring) in [
            ("ip and udp dst port 9003", QUIT_RING),
            ("ip and udp dst port 9004", ECHO_RING),
            ("ip and udp dst port 9006", REPORT_RING),
        ] {
            if let Err(error) = bind_witnessed(&mut witness, expression, ring, CapHandle::NONE) {
                println!("ashd: binding {expression:?}: {error:?}");
                return 3;
            }
        }
        println!("ashd: ready");
        let mut wakes = 0u64;
        loop {
            let woke = net::wait(
                libnet::abi::syscall::NET_WAIT_MAX_TICKS,
                libnet::abi::syscall::NET_WAIT_OWN_FRAMES,
            );
            wakes += 1;
            // The echo first: its reply's latency is measured.
            echo_from_ring(mac, &mut witness);
            report(&handlers, &mut witness);
            let quit = take_all(&mut witness, QUIT_RING);
            for ring in 0..QUIT_RING {
                take_all(&mut witness, ring);
            }
            check_vectored("", &VECTOR, &VECTOR_STATUS);
            check_vectored(" (two passes)", &VECTOR_TWO_PASS, &VECTOR_TWO_PASS_STATUS);
            let raised = HANDLER_UPCALL[0].swap(0, Ordering::Acquire);
            if raised != 0 {
                println!(
                    "ashd: upcall from handler {raised} with argument {:#x}; it is the upcalling one: {}",
                    HANDLER_UPCALL[1].load(Ordering::Relaxed),
                    raised == handlers[7].2
                );
            }
            let failing = handlers[4].1;
            let named = DISABLED_UPCALL[0].load(Ordering::Acquire);
            if named != 0 {
                println!(
                    "ashd: upcall: handler {named} disabled after {} aborts; it is the failing one: {}",
                    DISABLED_UPCALL[1].load(Ordering::Relaxed),
                    named == handlers[4].2
                );
                DISABLED_UPCALL[0].store(0, Ordering::Relaxed);
            }
            let disabled = net::ash_counter(failing, AshCounter::Disabled);
            let aborts = net::ash_counter(failing, AshCounter::Aborts);
            println!(
                "ashd: woke ({woke:?}): counter {}, failing handler aborts {aborts:?} disabled {disabled:?}",
                COUNTER.0[0][0].load(Ordering::Acquire)
            );
            if quit {
                break;
            }
        }
        for (expression, handler, _) in &handlers {
            let read = |counter| net::ash_counter(*handler, counter).unwrap_or(u64::MAX);
            println!(
                "ashd: handler {expression:?}: runs {} aborts {} replies {} refused {} disabled {}; cycles {}",
                read(AshCounter::Runs),
                read(AshCounter::Aborts),
                read(AshCounter::RepliesSent),
                read(AshCounter::RepliesRefused),
                read(AshCounter::Disabled),
                read(AshCounter::Cycles),
            );
        }
        print_frame_accounting();
        witness.report();
        println!(
            "ashd: done after {wakes} wakes; remote counter {}",
            COUNTER.0[0][0].load(Ordering::Acquire)
        );
        let _ = &SPARE;
        0
    }
}

#[cfg(target_os = "none")]
fn main() -> u8 {
    let mac = match libnet::net::mac() {
        Ok(mac) => mac,
        Err(error) => {
            libnet::println!("ashd: no NIC: {error:?}");
            return 2;
        }
    };
    let ipv4 = libnet::net::ipv4().unwrap_or([10, 0, 2, 15]);
    if !app::refusals(mac, ipv4) {
        return 1;
    }
    let mut argument = [0u8; 16];
    match libnet::net::boot_argument(0, &mut argument) {
        Ok(length) if &argument[..length] == b"serve" => app::serve(mac, ipv4),
        _ => 0,
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
