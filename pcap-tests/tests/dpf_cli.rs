//! The `dpf` command line as a tcpdump user drives it: frame lists equal tcpdump's stored
//! verdicts with either engine, errors exit with the documented status, `-w` round-trips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn dpf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dpf"))
        .args(args)
        .output()
        .expect("the dpf binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

/// tcpdump's stored frames for `expression` on `capture.pcap`.
fn tcpdump_frames(expression: &str) -> Vec<usize> {
    let verdicts = std::fs::read_to_string(fixtures().join("verdicts/capture.txt"))
        .expect("stored tcpdump verdicts");
    let line = verdicts
        .lines()
        .find_map(|l| l.strip_prefix(expression)?.strip_prefix('\t'))
        .unwrap_or_else(|| panic!("no stored verdict for {expression:?}"));
    line.split(',')
        .filter(|f| !f.is_empty())
        .map(|f| f.parse().expect("frame number"))
        .collect()
}

fn frames(output: &Output) -> Vec<usize> {
    stdout(output)
        .lines()
        .map(|l| l.parse().expect("one frame number per line"))
        .collect()
}

const EXPRESSIONS: [&str; 4] = ["tcp port 8080", "icmp", "tcp or udp", "not ip"];

#[test]
fn frames_equal_tcpdump_with_both_engines() {
    let capture = fixtures().join("capture.pcap");
    let capture = capture.to_str().expect("utf-8 path");
    for expression in EXPRESSIONS {
        let expected = tcpdump_frames(expression);
        assert!(!expected.is_empty(), "{expression} should match something");
        for engine in ["jit", "interp"] {
            let output = dpf(&["-r", capture, "-e", engine, "--frames", expression]);
            assert!(output.status.success(), "{expression} with {engine}");
            assert_eq!(frames(&output), expected, "{expression} with {engine}");
            let output = dpf(&["-r", capture, "-e", engine, "--count", expression]);
            assert_eq!(stdout(&output).trim(), expected.len().to_string());
        }
    }
}

#[test]
fn expression_words_are_joined_like_tcpdump() {
    let capture = fixtures().join("capture.pcap");
    let capture = capture.to_str().expect("utf-8 path");
    let split = dpf(&["-r", capture, "--frames", "tcp", "port", "8080"]);
    assert_eq!(frames(&split), tcpdump_frames("tcp port 8080"));
}

#[test]
fn default_output_is_one_line_per_match() {
    let capture = fixtures().join("capture.pcap");
    let output = dpf(&["-r", capture.to_str().unwrap(), "icmp"]);
    let text = stdout(&output);
    assert_eq!(text.lines().count(), tcpdump_frames("icmp").len());
    assert!(text.lines().all(|l| l.contains(" IP ")), "{text}");
}

#[test]
fn a_bad_expression_exits_2_and_points_at_it() {
    let capture = fixtures().join("capture.pcap");
    let output = dpf(&["-r", capture.to_str().unwrap(), "tcp dst port 8o"]);
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("position 13"), "{error}");
    assert!(error.contains("               ^"), "{error}");
}

#[test]
fn an_unreadable_capture_exits_1() {
    let output = dpf(&["-r", "/nonexistent/capture.pcap", "tcp"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/capture.pcap"));
    let not_a_capture = fixtures().join("expressions.txt");
    let output = dpf(&["-r", not_a_capture.to_str().unwrap(), "tcp"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a pcap"));
}

#[test]
fn written_matches_read_back_as_the_same_packets() {
    let capture = fixtures().join("capture.pcap");
    let out = std::env::temp_dir().join(format!("dpf-cli-{}.pcap", std::process::id()));
    let output = dpf(&[
        "-r",
        capture.to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
        "icmp",
    ]);
    assert!(output.status.success());
    let written = pcap_tests::trace::read_trace(&out).expect("dpf -w writes a readable pcap");
    let original = pcap_tests::trace::read_trace(&capture).expect("fixture");
    let expected: Vec<_> = tcpdump_frames("icmp")
        .into_iter()
        .map(|f| original[f - 1].clone())
        .collect();
    assert_eq!(written, expected);
    let _ = std::fs::remove_file(out);
}

#[test]
fn dump_and_disasm_show_the_trie_and_the_code() {
    let capture = fixtures().join("capture.pcap");
    let output = dpf(&[
        "-r",
        capture.to_str().unwrap(),
        "--count",
        "--dump",
        "--disasm",
        "tcp port 80 or udp port 53",
    ]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(text.starts_with("trie: "), "{text}");
    assert!(text.contains("accept id 1"), "{text}");
    assert!(text.contains("entry:"), "{text}");
    assert!(text.contains("ret"), "{text}");
}
