//! The `synth` tool as a user runs it: the trace it writes, cut or whole, and its refusals.

use std::process::Command;

use pcap_tests::trace::read_trace;

fn synth(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_synth"))
        .args(args)
        .output()
        .expect("run synth")
}

#[test]
fn snaplen_cuts_every_packet_and_keeps_its_wire_length() {
    let dir = std::env::temp_dir().join(format!("synth-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let whole = dir.join("whole.pcap");
    let cut = dir.join("cut.pcap");
    for (path, extra) in [(&whole, None), (&cut, Some("128"))] {
        let mut args = vec!["-o", path.to_str().unwrap(), "--packets", "3000"];
        if let Some(n) = extra {
            args.extend(["--snaplen", n]);
        }
        let out = synth(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let whole = read_trace(&whole).unwrap();
    let cut = read_trace(&cut).unwrap();
    assert_eq!(whole.len(), cut.len());
    let mut shortened = 0;
    for (w, c) in whole.iter().zip(&cut) {
        assert_eq!(c.wire_len, w.wire_len);
        assert_eq!(c.data[..], w.data[..w.data.len().min(128)]);
        shortened += usize::from(c.data.len() < w.data.len());
    }
    assert!(shortened > 0, "no packet was longer than 128 bytes");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_zero_snaplen_is_refused() {
    let path = std::env::temp_dir().join(format!("synth-cli-zero-{}.pcap", std::process::id()));
    let out = synth(&["-o", path.to_str().unwrap(), "--snaplen", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--snaplen"));
    assert!(!path.exists());
}
