//! The `ash-tap` clients: ARP, ICMP, UDP echo and the remote increment answered by ashd's
//! handlers in the kernel, a failing handler disabled, message vectoring and handler upcalls.
use super::{CLIENT_DEADLINE, Session, ping_three, udp};
use crate::topology::{GUEST_ADDRESS, TAP};
use std::time::Duration;

/// The guest woke its app with frames (a `net_wait` that returned a non-zero count).
fn woken_by_frames(session: &Session<'_>) -> Option<String> {
    session
        .seen
        .iter()
        .find(|line| line.contains("ashd: woke (Ok(") && !line.contains("ashd: woke (Ok(0))"))
        .cloned()
}

/// The `ash-tap` clients, in order; each bounded in count and time.
pub(super) fn ash_clients(session: &mut Session<'_>) -> Result<(), String> {
    session.wait_for("ashd: ready", Duration::from_secs(60))?;
    let arping = session.client(
        "arping",
        &["-c", "3", "-w", "10", "-I", TAP, GUEST_ADDRESS],
        CLIENT_DEADLINE,
        None,
    )?;
    let arping = String::from_utf8_lossy(&arping);
    if !arping.contains("Received 3 response(s)") {
        return Err(format!("arping: {arping}"));
    }
    ping_three(session, "")?;
    let payload: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    let echoed = udp(session, 7, &payload, true)?;
    if echoed != payload {
        return Err(format!(
            "UDP echo: sent {} bytes, got back {echoed:?}",
            payload.len()
        ));
    }
    let mut total = 0u64;
    for addend in [5u64, 7, 30] {
        total += addend;
        let reply = udp(session, 9000, &addend.to_be_bytes(), true)?;
        if reply != total.to_be_bytes() {
            return Err(format!(
                "remote increment by {addend}: reply {reply:?}, wanted {total}"
            ));
        }
    }
    session.drain();
    if let Some(line) = woken_by_frames(session) {
        return Err(format!(
            "the app was woken while its handlers answered: {line}"
        ));
    }
    for _ in 0..4 {
        udp(session, 9001, b"abort me", false)?;
    }
    session.wait_for("disabled Ok(1)", Duration::from_secs(20))?;
    // The others are unaffected.
    let echoed = udp(session, 7, b"still here", true)?;
    if echoed != b"still here" {
        return Err(format!(
            "UDP echo after the failing handler was disabled: {echoed:?}"
        ));
    }
    // Message vectoring: the payload lands in slot 5 (the second page of the app's buffer
    // region), its checksum verified while copying; the handler wakes the app.
    let mut vectored = 5u32.to_be_bytes().to_vec();
    vectored.extend((0..1000u32).map(|i| (i * 7 + 3) as u8));
    udp(session, 9002, &vectored, false)?;
    session.wait_for("ashd: vectored slot 5", Duration::from_secs(20))?;
    // A handler's upcall carries its argument (here the datagram's first eight bytes).
    udp(
        session,
        9007,
        &0x1122_3344_5566_7788u64.to_be_bytes(),
        false,
    )?;
    session.wait_for("ashd: upcall from handler", Duration::from_secs(20))?;
    udp(session, 9003, b"quit", false)?;
    Ok(())
}
