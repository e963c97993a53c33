//! The plot of `cargo xtask bench kernel`: linux/exo per operation as horizontal bars on a
//! logarithmic axis, one bar per mode, with each operation's target marked, as SVG. Text is
//! measured with the DejaVu Sans that pcap-tests ships (plotters' `ab_glyph` backend, which the
//! workspace enables for pcap-tests anyway), so no system font is needed.
use super::report::{Row, target};
use bench_common::Op;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::Once;

static DEJAVU_SANS: &[u8] = include_bytes!("../../../pcap-tests/assets/DejaVuSans.ttf");

pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, DEJAVU_SANS).is_err() {
            eprintln!("xtask: the bundled font did not load; the plot may lack text");
        }
    });
}

const COLOURS: [RGBColor; 3] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
];

/// Writes the SVG to `path`. Rows without a ratio are left out (the table says why).
pub fn write(rows: &[Row], path: &Path) -> crate::Result<()> {
    register_font();
    let series: Vec<(String, Vec<&Row>)> = {
        let mut names: Vec<String> = Vec::new();
        for row in rows {
            let name = label(row);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
            .into_iter()
            .map(|name| {
                let members = rows.iter().filter(|row| label(row) == name).collect();
                (name, members)
            })
            .collect()
    };
    let ratios = rows.iter().filter_map(|row| row.ratio);
    let (low, high) = ratios.fold((1.0f64, 1.0f64), |(low, high), ratio| {
        (low.min(ratio), high.max(ratio))
    });
    let x_range = (low / 2.0).max(1e-3)..(high.max(30.0) * 2.0);
    let count = Op::ALL.len();

    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "exo vs Linux 6.1 under QEMU: linux / exo per operation (> 1: cheaper on exo)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(170)
        .build_cartesian_2d(x_range.clone().log_scale(), -0.6f64..count as f64 - 0.4)?;
    chart
        .configure_mesh()
        .y_labels(count)
        .y_label_formatter(&|y: &f64| {
            let index = y.round();
            if (y - index).abs() < 1e-6 && index >= 0.0 && (index as usize) < count {
                Op::ALL[count - 1 - index as usize].name().to_string()
            } else {
                String::new()
            }
        })
        .x_desc("linux / exo (log scale)")
        .x_labels(12)
        .x_label_formatter(&|x: &f64| format!("{}x", (x * 100.0).round() / 100.0))
        .disable_y_mesh()
        .draw()?;

    // Parity: equal cost.
    chart.draw_series(LineSeries::new(
        [(1.0, -0.6), (1.0, count as f64 - 0.4)],
        BLACK.stroke_width(1),
    ))?;

    let band = 0.8 / series.len().max(1) as f64;
    for (index, (name, members)) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let bars = members.iter().filter_map(|row| {
            let ratio = row.ratio?;
            let position = count - 1 - Op::from_name(row.op)? as usize;
            let top = position as f64 + 0.4 - band * index as f64;
            Some(Rectangle::new(
                [(x_range.start, top - band * 0.9), (ratio, top)],
                colour.filled(),
            ))
        });
        chart
            .draw_series(bars)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }

    // Each bar's value, and why a row has none.
    let text_style = ("sans-serif", 12).into_font().color(&BLACK);
    for (index, (_, members)) in series.iter().enumerate() {
        let labels = members.iter().filter_map(|row| {
            let ratio = row.ratio?;
            let position = count - 1 - Op::from_name(row.op)? as usize;
            let middle = position as f64 + 0.4 - band * index as f64 - band * 0.45;
            Some(Text::new(
                format!(" {ratio:.2}x"),
                (ratio, middle),
                text_style.clone().pos(Pos::new(HPos::Left, VPos::Center)),
            ))
        });
        chart.draw_series(labels)?;
    }
    let missing = Op::ALL.into_iter().filter_map(|op| {
        let of_op: Vec<&Row> = rows.iter().filter(|row| row.op == op.name()).collect();
        if of_op.is_empty() || of_op.iter().any(|row| row.ratio.is_some()) {
            return None;
        }
        let note = of_op
            .iter()
            .find_map(|row| row.exo_note.as_ref().map(|note| format!("exo: {note}")))
            .or_else(|| of_op.iter().find_map(|row| row.linux_note.clone()))
            .unwrap_or_default();
        let position = (count - 1 - op as usize) as f64;
        Some(Text::new(
            note,
            (x_range.start * 1.1, position),
            text_style.clone().pos(Pos::new(HPos::Left, VPos::Center)),
        ))
    });
    chart.draw_series(missing)?;

    // Targets: a red tick at the ratio each operation should reach.
    let ticks = Op::ALL.into_iter().filter_map(|op| {
        let at = target(op)?.mark();
        let position = (count - 1 - op as usize) as f64;
        Some(PathElement::new(
            [(at, position - 0.45), (at, position + 0.45)],
            RED.stroke_width(2),
        ))
    });
    chart
        .draw_series(ticks)?
        .label("target")
        .legend(|(x, y)| PathElement::new([(x + 6, y - 6), (x + 6, y + 6)], RED.stroke_width(2)));

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn label(row: &Row) -> String {
    if row.accel == "tcg" {
        row.mode.to_string()
    } else {
        format!("{} ({})", row.mode, row.accel)
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::{Mode, Side, parse_serial, rows};
    use super::*;

    #[test]
    fn draws_every_ratio_and_skips_missing_ones() {
        let exo = Side::Ran(parse_serial(
            "BENCH op=null_syscall repeat=0 iters=1 cycles=60\n\
             BENCH op=matmul repeat=0 iters=1 cycles=1000\nBENCH done\n",
        ));
        let linux = Side::Ran(parse_serial(
            "BENCH op=null_syscall repeat=0 iters=1 cycles=309\n\
             BENCH op=appel_li_trap repeat=0 iters=1 cycles=4067\n\
             BENCH op=matmul repeat=0 iters=1 cycles=1010\nBENCH done\n",
        ));
        let mut all = rows(Mode::Icount, "tcg", &exo, &linux);
        all.extend(rows(Mode::Wall, "tcg", &exo, &linux));
        let path = std::env::temp_dir().join(format!("kernel-plot-{}.svg", std::process::id()));
        write(&all, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        for name in [
            "null_syscall",
            "appel_li_trap",
            "matmul",
            "icount",
            "wall",
            "target",
        ] {
            assert!(svg.contains(name), "{name} missing from the plot");
        }
    }
}
