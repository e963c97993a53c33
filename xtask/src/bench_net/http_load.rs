//! The HTTP load clients, Debian's `wrk --latency` and `ab -k`, and what their reports say:
//! requests, requests/s, p50 and p99 latency, and errors (socket errors, non-2xx replies,
//! failed requests). A report without those lines is an error, never a zero.

/// What one load run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Load {
    pub requests: u64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors, timeouts, non-2xx/3xx answers (wrk) or failed requests (ab).
    pub errors: u64,
}

/// `1.10ms`, `456.00us`, `2.00s`, `1.00m` in milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(value * scale)
}

/// Reads wrk's `--latency` report.
pub fn parse_wrk(report: &str) -> Result<Load, String> {
    let mut load = Load::default();
    let (mut p50, mut p99, mut rate, mut requests) = (None, None, None, None);
    for line in report.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => p50 = duration_ms(value),
            ["99%", value] => p99 = duration_ms(value),
            ["Requests/sec:", value] => rate = value.parse().ok(),
            [count, "requests", "in", ..] => requests = count.parse().ok(),
            ["Socket", "errors:", rest @ ..] => {
                load.errors += rest
                    .iter()
                    .filter_map(|word| word.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                load.errors += count.parse::<u64>().unwrap_or(0);
            }
            _ => {}
        }
    }
    let missing = |what: &str| format!("wrk's report has no {what}: {report:?}");
    load.p50_ms = p50.ok_or_else(|| missing("50% latency"))?;
    load.p99_ms = p99.ok_or_else(|| missing("99% latency"))?;
    load.requests_per_second = rate.ok_or_else(|| missing("Requests/sec"))?;
    load.requests = requests.ok_or_else(|| missing("request count"))?;
    Ok(load)
}

/// Reads ab's report (`-k`): complete and failed requests, requests per second, and the
/// 50% and 99% lines of its percentile table (whole milliseconds).
pub fn parse_ab(report: &str) -> Result<Load, String> {
    let mut load = Load::default();
    let (mut p50, mut p99, mut rate, mut requests) = (None, None, None, None);
    for line in report.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value, ..] => p50 = value.parse().ok(),
            ["99%", value, ..] => p99 = value.parse().ok(),
            ["Requests", "per", "second:", value, ..] => rate = value.parse().ok(),
            ["Complete", "requests:", count] => requests = count.parse().ok(),
            ["Failed", "requests:", count] => load.errors += count.parse::<u64>().unwrap_or(0),
            ["Non-2xx", "responses:", count] => load.errors += count.parse::<u64>().unwrap_or(0),
            _ => {}
        }
    }
    let missing = |what: &str| format!("ab's report has no {what}: {report:?}");
    load.p50_ms = p50.ok_or_else(|| missing("50% line"))?;
    load.p99_ms = p99.ok_or_else(|| missing("99% line"))?;
    load.requests_per_second = rate.ok_or_else(|| missing("Requests per second"))?;
    load.requests = requests.ok_or_else(|| missing("Complete requests"))?;
    Ok(load)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "\
Running 10s test @ http://10.0.2.15/1k.html
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  10.00ms   90.00%
    Req/Sec     8.00k   500.00     9.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.30ms
     90%    1.50ms
     99%    1.02s
  80123 requests in 10.00s, 90.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 3
Requests/sec:   8012.30
Transfer/sec:      9.00MB
";

    #[test]
    fn reads_wrk_latency_reports() {
        let load = parse_wrk(WRK).unwrap();
        assert_eq!(load.requests, 80123);
        assert_eq!(load.requests_per_second, 8012.3);
        assert!((load.p50_ms - 0.812).abs() < 1e-9);
        assert_eq!(load.p99_ms, 1020.0);
        assert_eq!(load.errors, 10);
        let clean = WRK
            .lines()
            .filter(|line| !line.contains("errors") && !line.contains("Non-2xx"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse_wrk(&clean).unwrap().errors, 0);
        assert!(parse_wrk(&WRK.replace("99%", "98%")).is_err());
        assert!(parse_wrk("unable to connect to 10.0.2.15:80 Connection refused").is_err());
    }

    const AB: &str = "\
Concurrency Level:      16
Time taken for tests:   2.000 seconds
Complete requests:      5000
Failed requests:        1
Keep-Alive requests:    5000
Requests per second:    2500.12 [#/sec] (mean)
Time per request:       6.400 [ms] (mean)
Percentage of the requests served within a certain time (ms)
  50%      6
  66%      7
  99%     19
 100%     30 (longest request)
";

    #[test]
    fn reads_ab_reports() {
        let load = parse_ab(AB).unwrap();
        assert_eq!(load.requests, 5000);
        assert_eq!(load.requests_per_second, 2500.12);
        assert_eq!((load.p50_ms, load.p99_ms), (6.0, 19.0));
        assert_eq!(load.errors, 1);
        assert!(parse_ab(&AB.replace("Complete", "Finished")).is_err());
    }

    #[test]
    fn reads_wrk_durations() {
        assert_eq!(duration_ms("456.00us"), Some(0.456));
        assert_eq!(duration_ms("2.00s"), Some(2000.0));
        assert_eq!(duration_ms("1.5m"), Some(90000.0));
        assert_eq!(duration_ms("12"), None);
        assert_eq!(duration_ms("1.0xs"), None);
    }
}
