//! The plot of `bench net`, as SVG and PNG: on the left, requests/s of exo's httpd and
//! nginx per document and connection count (log scale); on the right, the UDP echo round
//! trip's p50 against the number of busy environments, for ASH, the echo app and Linux.
use super::report::{EXO_HTTPD, Group, Row};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const EXO: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const LINUX: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const APP: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);

/// Writes `stem.svg` and `stem.png`.
pub fn write(rows: &[Row], svg: &Path, png: &Path) -> crate::Result<()> {
    crate::bench_kernel::register_plot_font();
    let size = (1200, 520);
    draw(SVGBackend::new(svg, size).into_drawing_area(), rows)?;
    draw(BitMapBackend::new(png, size).into_drawing_area(), rows)?;
    Ok(())
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, rows: &[Row]) -> crate::Result<()>
where
    DB::ErrorType: 'static,
{
    let fail = |error: DrawingAreaErrorKind<DB::ErrorType>| format!("plotting: {error:?}");
    root.fill(&WHITE).map_err(fail)?;
    let (left, right) = root.split_horizontally(660);

    let http: Vec<&Row> = rows.iter().filter(|row| row.group == Group::Http).collect();
    let mut cases: Vec<String> = Vec::new();
    for row in &http {
        if !cases.contains(&row.case) {
            cases.push(row.case.clone());
        }
    }
    let top = http
        .iter()
        .filter_map(|row| row.rate())
        .fold(10.0f64, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "HTTP requests/s (wrk): exo httpd vs nginx",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..cases.len().max(1) as f64, (1f64..top).log_scale())
        .map_err(fail)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(cases.len().max(1) * 2 + 1)
        .x_label_formatter(&|x: &f64| {
            let index = (x - 0.5).round();
            if (x - 0.5 - index).abs() < 1e-6 && index >= 0.0 {
                cases.get(index as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("requests/s")
        .draw()
        .map_err(fail)?;
    for (system, colour, offset) in [("exo", EXO, 0.1), ("linux", LINUX, 0.5)] {
        let bars: Vec<(usize, f64)> = http
            .iter()
            // exo's bars are exo's httpd (the smoltcp path is in the table only).
            .filter(|row| row.system == system && (system != "exo" || row.server == EXO_HTTPD))
            .filter_map(|row| {
                Some((
                    cases.iter().position(|case| *case == row.case)?,
                    row.rate()?,
                ))
            })
            .collect();
        chart
            .draw_series(bars.into_iter().map(|(index, rate)| {
                let x = index as f64 + offset;
                Rectangle::new([(x, 1.0), (x + 0.4, rate.max(1.0))], colour.filled())
            }))
            .map_err(fail)?
            .label(if system == "exo" {
                "exo httpd (cheetah=all)"
            } else {
                "Linux nginx"
            })
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(fail)?;

    let udp: Vec<&Row> = rows.iter().filter(|row| row.group == Group::Udp).collect();
    let busy = |row: &Row| row.case.strip_prefix("busy ")?.parse::<f64>().ok();
    let highest = udp
        .iter()
        .filter_map(|row| row.p50_us())
        .fold(10.0f64, f64::max)
        * 1.2;
    let mut chart = ChartBuilder::on(&right)
        .caption(
            "UDP echo round trip p50 vs busy environments",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..10.5, 0f64..highest)
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc("busy environments / processes on the server")
        .y_desc("p50 round trip (us)")
        .draw()
        .map_err(fail)?;
    for (system, server, colour, label) in [
        ("exo", "ash", EXO, "exo: ASH in the kernel"),
        ("exo", "echo app", APP, "exo: echo app (ring)"),
        (
            "linux",
            "udp-echo process",
            LINUX,
            "Linux: UDP echo process",
        ),
    ] {
        let mut points: Vec<(f64, f64)> = udp
            .iter()
            .filter(|row| row.system == system && row.server == server)
            .filter_map(|row| Some((busy(row)?, row.p50_us()?)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(fail)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|point| Circle::new(point, 3, colour.filled())),
            )
            .map_err(fail)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(fail)?;
    root.present().map_err(fail)?;
    Ok(())
}
