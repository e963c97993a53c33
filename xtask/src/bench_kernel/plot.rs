//! The plot of `cargo xtask bench kernel`: linux/exo per operation as horizontal bars on a
//! logarithmic axis, one bar per mode, with each operation's target marked. SVG, so no font
//! files are needed (the viewer draws the text).
use super::report::{Row, target};
use bench_common::Op;
use plotters::prelude::*;
use std::path::Path;

const COLOURS: [RGBColor; 3] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
];

/// Writes the SVG to `path`. Rows without a ratio are left out (the table says why).
pub fn write(rows: &[Row], path: &Path) -> crate::Result<()> {
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
        .x_label_formatter(&|x: &f64| format!("{x}x"))
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
