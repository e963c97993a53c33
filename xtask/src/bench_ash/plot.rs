//! The plot of `cargo xtask bench ash`'s guest figures, as SVG and PNG: on the left, guest
//! instructions per message-vectoring run by UDP payload, one bar per way of summing; on the
//! right, guest instructions from a UDP echo's arrival to its reply's queueing, ASH against
//! app. Each bar is the median of the rounds, its whisker their range. Text is drawn with the
//! DejaVu Sans that pcap-tests ships (ab_glyph), so the PNG needs no system font.
use super::{Echoer, Figure, PAYLOADS, Pass, figure};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::Once;

static DEJAVU_SANS: &[u8] = include_bytes!("../../../pcap-tests/assets/DejaVuSans.ttf");
const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_err() {
            eprintln!("xtask: the bundled font did not load; the plot may lack text");
        }
    });
}

const ONE_PASS: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const TWO_PASS: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const ASH: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const APP: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// Writes `stem.svg` and `stem.png`.
pub fn write(figures: &[Figure], stem: &Path) -> crate::Result<()> {
    register_font();
    let size = (1100, 520);
    let svg = stem.with_extension("svg");
    draw(SVGBackend::new(&svg, size).into_drawing_area(), figures)
        .map_err(|error| format!("{}: {error}", svg.display()))?;
    let png = stem.with_extension("png");
    draw(BitMapBackend::new(&png, size).into_drawing_area(), figures)
        .map_err(|error| format!("{}: {error}", png.display()))?;
    Ok(())
}

/// One bar: where it sits, its colour, and its figure.
type Bar<'a> = (f64, RGBColor, &'a Figure);

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    figures: &[Figure],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(
        "ASH in the kernel under QEMU -icount shift=0 (guest instructions, median and range)",
        (FONT, 20),
    )?;
    let (left, right) = root.split_horizontally(680);

    let mut copies: Vec<Bar> = Vec::new();
    for (index, payload) in PAYLOADS.iter().enumerate() {
        for (offset, pass, colour) in [
            (-0.2, Pass::Integrated, ONE_PASS),
            (0.2, Pass::TwoPass, TWO_PASS),
        ] {
            if let Some(f) = figure(figures, "copy_checksum", &format!("{pass:?}"), *payload) {
                copies.push((index as f64 + offset, colour, f));
            }
        }
    }
    let labels: Vec<String> = PAYLOADS.iter().map(|p| format!("{p} B")).collect();
    panel(
        &left,
        "message vectoring: per handler run",
        "UDP payload",
        &labels,
        &copies,
        &[
            (Pass::Integrated.label(), ONE_PASS),
            (Pass::TwoPass.label(), TWO_PASS),
        ],
    )?;

    let mut echoes: Vec<Bar> = Vec::new();
    for (index, (echoer, colour)) in [(Echoer::Ash, ASH), (Echoer::App, APP)]
        .into_iter()
        .enumerate()
    {
        if let Some(f) = figure(figures, "udp_echo", &format!("{echoer:?}"), 64) {
            echoes.push((index as f64, colour, f));
        }
    }
    let labels = vec!["ASH".to_string(), "app".to_string()];
    panel(
        &right,
        "UDP echo (64 B): arrival to reply queued",
        "answered by",
        &labels,
        &echoes,
        &[(Echoer::Ash.label(), ASH), (Echoer::App.label(), APP)],
    )?;
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    x_description: &str,
    labels: &[String],
    bars: &[Bar],
    legend: &[(&str, RGBColor)],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let top = bars.iter().map(|(_, _, f)| f.max).fold(1.0f64, f64::max) * 1.25;
    let count = labels.len();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.6f64..count as f64 - 0.4, 0f64..top)?;
    let names = labels.to_vec();
    chart
        .configure_mesh()
        .x_labels(count)
        .x_label_formatter(&move |x: &f64| {
            let index = x.round();
            if (x - index).abs() < 1e-6 && index >= 0.0 && (index as usize) < names.len() {
                names[index as usize].clone()
            } else {
                String::new()
            }
        })
        .x_desc(x_description)
        .y_desc("guest instructions")
        .y_label_formatter(&|y: &f64| format!("{y:.0}"))
        .label_style((FONT, 13))
        .disable_x_mesh()
        .draw()?;
    let half = 0.18;
    chart.draw_series(bars.iter().map(|(x, colour, f)| {
        Rectangle::new([(x - half, 0.0), (x + half, f.median)], colour.filled())
    }))?;
    chart
        .draw_series(bars.iter().map(|(x, _, f)| {
            PathElement::new([(*x, f.min), (*x, f.max)], BLACK.stroke_width(2))
        }))?;
    let text = (FONT, 12).into_font().color(&BLACK);
    chart.draw_series(bars.iter().map(|(x, _, f)| {
        Text::new(
            format!("{:.0}", f.median),
            (x - half, f.max + top * 0.03),
            text.clone(),
        )
    }))?;
    for (name, colour) in legend {
        let colour = *colour;
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_panels_with_their_figures() {
        let mut figures = Vec::new();
        for (kind, engine, payload, median) in [
            ("copy_checksum", "Integrated", 64, 1111.0),
            ("copy_checksum", "TwoPass", 64, 2222.0),
            ("copy_checksum", "Integrated", 1472, 3333.0),
            ("udp_echo", "Ash", 64, 4444.0),
            ("udp_echo", "App", 64, 55555.0),
        ] {
            figures.push(Figure {
                kind,
                engine: engine.to_string(),
                payload_bytes: payload,
                median,
                min: median - 10.0,
                max: median + 10.0,
            });
        }
        let stem = std::env::temp_dir().join(format!("ash-plot-{}", std::process::id()));
        write(&figures, &stem).unwrap();
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        let png = std::fs::read(stem.with_extension("png")).unwrap();
        let _ = std::fs::remove_file(stem.with_extension("svg"));
        let _ = std::fs::remove_file(stem.with_extension("png"));
        assert!(svg.starts_with("<svg"));
        assert!(png.starts_with(b"\x89PNG"));
        for text in [
            "1111",
            "2222",
            "3333",
            "4444",
            "55555",
            "1472 B",
            "message vectoring",
        ] {
            assert!(svg.contains(text), "{text} missing from the plot");
        }
    }
}
