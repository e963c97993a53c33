//! The plot: ns/packet against the number of filters, both axes logarithmic, one line per
//! engine, as SVG and PNG. Text is drawn with the bundled DejaVu Sans (ab_glyph), so the PNG
//! needs no system fonts or fontconfig.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::report::{Row, RowKind};

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_err() {
            eprintln!("warning: the bundled font did not load; plot text may be missing");
        }
    });
}

/// Engines in legend order, each with a fixed colour.
const ENGINES: [(&str, RGBColor); 13] = [
    ("dpf-jit", RGBColor(0xd6, 0x27, 0x28)),
    ("dpf-jit-two-copies", RGBColor(0xf7, 0xb6, 0xd2)),
    ("dpf-interp", RGBColor(0xff, 0x7f, 0x0e)),
    ("dpf-jit-unmerged", RGBColor(0xe3, 0x77, 0xc2)),
    ("native", RGBColor(0x00, 0x00, 0x00)),
    ("native-hash", RGBColor(0x17, 0xbe, 0xcf)),
    ("ebpf-map", RGBColor(0xbc, 0xbd, 0x22)),
    ("libpcap", RGBColor(0x1f, 0x77, 0xb4)),
    ("bpfjit", RGBColor(0x2c, 0xa0, 0x2c)),
    ("rbpf-jit", RGBColor(0x94, 0x67, 0xbd)),
    ("dpdk-bpf-jit", RGBColor(0x8c, 0x56, 0x4b)),
    ("rte-acl", RGBColor(0x99, 0x00, 0x66)),
    ("other", RGBColor(0x7f, 0x7f, 0x7f)),
];

fn colour(engine: &str) -> RGBColor {
    ENGINES
        .iter()
        .find(|(name, _)| *name == engine)
        .map_or(ENGINES[ENGINES.len() - 1].1, |(_, c)| *c)
}

/// `(filters, ns/packet median)` per engine for `trace`, in legend order.
pub fn series(rows: &[Row], trace: &str) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut by_engine: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for row in rows {
        if row.kind != RowKind::Demux || row.trace.as_deref() != Some(trace) {
            continue;
        }
        if let (Some(k), Some(ns)) = (row.filters, row.ns_per_packet_median) {
            by_engine
                .entry(row.engine.clone())
                .or_default()
                .push((k as f64, ns));
        }
    }
    let rank = |e: &str| {
        ENGINES
            .iter()
            .position(|(n, _)| *n == e)
            .unwrap_or(ENGINES.len())
    };
    let mut out: Vec<(String, Vec<(f64, f64)>)> = by_engine
        .into_iter()
        .map(|(engine, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (engine, points)
        })
        .collect();
    out.sort_by_key(|(e, _)| rank(e));
    out
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    lines: &[(String, Vec<(f64, f64)>)],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let points = lines.iter().flat_map(|(_, p)| p.iter());
    let (mut k_max, mut ns_min, mut ns_max) = (1.0f64, f64::MAX, 1.0f64);
    for &(k, ns) in points {
        k_max = k_max.max(k);
        ns_min = ns_min.min(ns);
        ns_max = ns_max.max(ns);
    }
    if ns_min == f64::MAX {
        ns_min = 1.0;
    }
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (0.8f64..k_max * 1.25).log_scale(),
            (ns_min / 1.5..ns_max * 1.5).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("flow filters bound")
        .y_desc("ns per packet (median)")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .x_label_formatter(&|v| format!("{}", v.round() as u64))
        .y_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{}", v.round() as u64)
            } else {
                format!("{v:.1}")
            }
        })
        .draw()?;
    for (engine, line) in lines {
        let c = colour(engine);
        chart
            .draw_series(LineSeries::new(line.iter().copied(), c.stroke_width(2)))?
            .label(engine.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(
            line.iter()
                .map(|&(k, ns)| Circle::new((k, ns), 3, c.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Writes `stem.svg` and `stem.png` for `trace`'s demux rows.
pub fn write_plots(rows: &[Row], trace: &str, stem: &Path) -> Result<(), String> {
    register_font();
    let lines = series(rows, trace);
    let title = format!("Demultiplexing one packet, trace {trace}");
    let size = (960, 600);
    let svg = stem.with_extension("svg");
    draw(
        SVGBackend::new(&svg, size).into_drawing_area(),
        &title,
        &lines,
    )
    .map_err(|e| format!("{}: {e}", svg.display()))?;
    let png = stem.with_extension("png");
    draw(
        BitMapBackend::new(&png, size).into_drawing_area(),
        &title,
        &lines,
    )
    .map_err(|e| format!("{}: {e}", png.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_group_by_engine_in_legend_order() {
        let mut rows = Vec::new();
        for (engine, k, ns) in [
            ("libpcap", 10, 500.0),
            ("dpf-jit", 10, 12.0),
            ("dpf-jit", 1, 10.0),
            ("libpcap", 1, 40.0),
        ] {
            let mut r = Row::new(RowKind::Demux, engine);
            r.trace = Some("synth".into());
            r.filters = Some(k);
            r.ns_per_packet_median = Some(ns);
            rows.push(r);
        }
        let s = series(&rows, "synth");
        assert_eq!(s[0].0, "dpf-jit");
        assert_eq!(s[0].1, vec![(1.0, 10.0), (10.0, 12.0)]);
        assert_eq!(s[1].0, "libpcap");
        assert!(series(&rows, "other").is_empty());
    }

    #[test]
    fn plots_are_written() {
        let mut rows = Vec::new();
        for (k, ns) in [(1, 10.0), (100, 11.0), (10_000, 14.0)] {
            let mut r = Row::new(RowKind::Demux, "dpf-jit");
            r.trace = Some("synth".into());
            r.filters = Some(k);
            r.ns_per_packet_median = Some(ns);
            rows.push(r);
        }
        let dir = std::env::temp_dir().join(format!("demux-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stem = dir.join("demux");
        write_plots(&rows, "synth", &stem).unwrap();
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        assert!(svg.contains("dpf-jit"));
        let png = std::fs::read(stem.with_extension("png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
