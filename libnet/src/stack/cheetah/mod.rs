//! Cheetah's techniques (Xok's HTTP server, Kaashoek et al. SOSP 1997): a server-side TCP
//! engine beside smoltcp for connections whose replies are prebuilt, immutable responses.
//!
//! - **prebuilt**: every response is cut into segment-sized chunks whose one's-complement sums
//!   are computed once ([`prebuilt`]); a segment then costs only its header's sum.
//! - **cache**: segments are sent straight from the response where it lies (gathered with the
//!   header by `net_transmit`), so the response is the retransmission pool; without it the
//!   engine copies into a per-connection send buffer first, as a socket would.
//! - **piggyback**: the ACK of a request rides on the response's first segment and the FIN on
//!   its last, instead of segments of their own.
//!
//! The engine ([`server`]) is correct TCP on its own: passive open with MSS, in-order receive
//! with cumulative ACKs, the peer's window (zero-window probes), a congestion window,
//! retransmission with an RFC 6298 estimator ([`rto`]) and fast retransmit, FIN/close, RST
//! for what it refuses, and compact TIME-WAIT records. Everything is pure: frames in, frames
//! out through a [`server::Link`], time given by the caller, so it is tested on the host.
#[cfg(test)]
mod engine_tests;
pub mod prebuilt;
pub mod rto;
pub mod segment;
pub mod seq;
pub mod server;

use core::fmt;

/// Which techniques are on (httpd's `cheetah=LIST`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Techniques {
    /// libnet's engine serves, with none of the three unless they are on too (`engine`: the
    /// baseline each technique's own gain is measured from).
    pub engine: bool,
    pub prebuilt: bool,
    pub cache: bool,
    pub piggyback: bool,
}

impl Techniques {
    /// All three.
    pub const ALL: Techniques = Techniques {
        engine: true,
        prebuilt: true,
        cache: true,
        piggyback: true,
    };

    /// `none`, `all`, `engine`, or a comma-separated list of `prebuilt`, `cache`, `piggyback`.
    pub fn parse(list: &str) -> Result<Techniques, &str> {
        let mut techniques = Techniques::default();
        for word in list.split(',') {
            match word {
                "none" => {}
                "all" => techniques = Techniques::ALL,
                "engine" => techniques.engine = true,
                "prebuilt" => techniques.prebuilt = true,
                "cache" => techniques.cache = true,
                "piggyback" => techniques.piggyback = true,
                other => return Err(other),
            }
        }
        techniques.engine |= techniques.prebuilt || techniques.cache || techniques.piggyback;
        Ok(techniques)
    }

    /// Whether any is on (then the engine serves, else smoltcp does).
    pub fn any(&self) -> bool {
        self.engine || self.prebuilt || self.cache || self.piggyback
    }
}

impl fmt::Display for Techniques {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.any() {
            return f.write_str("none");
        }
        if !(self.prebuilt || self.cache || self.piggyback) {
            return f.write_str("engine");
        }
        let mut first = true;
        for (on, name) in [
            (self.prebuilt, "prebuilt"),
            (self.cache, "cache"),
            (self.piggyback, "piggyback"),
        ] {
            if on {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn lists_parse_and_print() {
        assert_eq!(Techniques::parse("none"), Ok(Techniques::default()));
        assert_eq!(Techniques::parse("all"), Ok(Techniques::ALL));
        let two = Techniques::parse("cache,prebuilt").unwrap();
        assert_eq!(two.to_string(), "prebuilt,cache");
        assert_eq!(Techniques::ALL.to_string(), "prebuilt,cache,piggyback");
        assert_eq!(Techniques::default().to_string(), "none");
        assert_eq!(Techniques::parse("cache,fast"), Err("fast"));
        let engine = Techniques::parse("engine").unwrap();
        assert!(engine.any() && !engine.cache);
        assert_eq!(engine.to_string(), "engine");
        assert!(two.engine);
    }
}
