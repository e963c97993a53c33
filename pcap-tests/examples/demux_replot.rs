//! Redraws the demux benchmark's plots from a `demux.json` it wrote, without measuring again.
//!
//! `cargo run --release -p pcap-tests --example demux_replot -- DIR/demux.json OUT_STEM`
//! writes `OUT_STEM.svg` and `OUT_STEM.png` for the synthetic trace.

use pcap_tests::bench::{plot, report::Row};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, json, stem] = &args[..] else {
        return Err("usage: demux_replot DEMUX.json OUT_STEM".into());
    };
    let text = std::fs::read_to_string(json).map_err(|e| format!("{json}: {e}"))?;
    let rows: Vec<Row> = serde_json::from_str(&text).map_err(|e| format!("{json}: {e}"))?;
    plot::write_plots(&rows, "synth", std::path::Path::new(stem))
}
